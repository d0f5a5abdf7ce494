//! How a node logs, to standard output: text for people, or one JSON object per line for machines
//! (`--log-format json`), filtered by `RUST_LOG` (default `info`).
//!
//! - Every line names the node once it is known (`name_node`): several nodes' logs read as one
//!   (a devnet's, a journal) stay apart. Text: `TIME LEVEL NODE TARGET: message fields`; JSON: a
//!   `"node"` member.
//! - Colours only when standard output is a terminal (and `NO_COLOR` is not set): a log file or a
//!   journal gets plain text.
//! - The line that ends a failed process (`fatal`) and a panic's message are in the log's format:
//!   in JSON mode a log shipper sees JSON to the last line.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The node's name, in every line from when it is known.
static NODE: OnceLock<String> = OnceLock::new();
/// The log is JSON (`init(true)`).
static JSON: AtomicBool = AtomicBool::new(false);
/// `init` ran: `fatal` writes through the log.
static STARTED: AtomicBool = AtomicBool::new(false);

/// Starts logging for the process (once).
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colours = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours);
    let started = if json {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(Named {
                json: Some(tracing_subscriber::fmt::format().json()),
            })
            .try_init()
    } else {
        builder.event_format(Named { json: None }).try_init()
    };
    if started.is_ok() {
        JSON.store(json, Ordering::Relaxed);
        STARTED.store(true, Ordering::Relaxed);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if JSON.load(Ordering::Relaxed) {
                tracing::error!(panic = true, "{info}");
            } else {
                previous(info);
            }
        }));
    }
}

/// Names the node in every later line (the first name given stays).
pub fn name_node(name: &str) {
    let _ = NODE.set(name.to_string());
}

/// The last line of a process that fails: `timed: error: ...` on standard error, or, once a JSON
/// log is started, an ERROR object in it.
pub fn fatal(text: &str) {
    if STARTED.load(Ordering::Relaxed) && JSON.load(Ordering::Relaxed) {
        tracing::error!(fatal = true, "{text}");
    } else {
        eprintln!("timed: error: {text}");
    }
}

/// Each line in the log's format, naming the node: text (`json: None`) as
/// `TIME LEVEL NODE TARGET: message fields`, or tracing-subscriber's JSON object with `"node"`
/// first.
struct Named {
    json: Option<Format<Json>>,
}

impl<S, N> FormatEvent<S, N> for Named
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match &self.json {
            Some(json) => json_line(json, ctx, w, event),
            None => text_line(ctx, w, event),
        }
    }
}

fn text_line<S, N>(ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let ansi = w.has_ansi_escapes();
    let meta = event.metadata();
    if ansi {
        w.write_str("\x1b[2m")?;
    }
    SystemTime.format_time(&mut w)?;
    let level = *meta.level();
    if ansi {
        let colour = match level {
            Level::ERROR => "31",
            Level::WARN => "33",
            Level::INFO => "32",
            Level::DEBUG => "34",
            Level::TRACE => "35",
        };
        write!(w, "\x1b[0m \x1b[{colour}m{level:>5}\x1b[0m ")?;
    } else {
        write!(w, " {level:>5} ")?;
    }
    if let Some(node) = NODE.get() {
        write!(w, "{node} ")?;
    }
    write!(w, "{}: ", meta.target())?;
    ctx.field_format().format_fields(w.by_ref(), event)?;
    writeln!(w)
}

fn json_line<S, N>(
    json: &Format<Json>,
    ctx: &FmtContext<'_, S, N>,
    mut w: Writer<'_>,
    event: &Event<'_>,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let Some(node) = NODE.get() else {
        return json.format_event(ctx, w, event);
    };
    let mut line = String::new();
    json.format_event(ctx, Writer::new(&mut line), event)?;
    match line.strip_prefix('{') {
        Some(rest) => {
            let name = serde_json::to_string(node).map_err(|_| fmt::Error)?;
            write!(w, "{{\"node\":{name},{rest}")
        }
        None => w.write_str(&line),
    }
}
