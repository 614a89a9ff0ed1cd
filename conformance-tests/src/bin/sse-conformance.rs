//! `sse-conformance check`: the black-box checker for a deployed stream.
//! Run `sse-conformance check --help` for the options.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use std::sync::Arc;
use std::time::Duration;

use sse_conformance::check::{self, HttpPublish, Publisher, Recipient, Target};

/// Checks SSE endpoints built on the sse-layer crates, or any other.
#[derive(Debug, Parser)]
#[command(name = "sse-conformance", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a deployed event-stream endpoint: headers, first-byte
    /// latency, framing, heartbeat, 401 without credentials, 405, and
    /// (given a way to publish) live delivery, Last-Event-ID replay and
    /// isolation between two principals. Prints a table; exits 0 when
    /// every check passed, 1 when one failed, 2 on a usage error.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The stream, http://host:port/path?query.
    #[arg(long, value_name = "URL")]
    url: String,
    /// Cookie header of the first principal (e.g. 'sid=abc').
    #[arg(long, value_name = "VALUE")]
    cookie: Option<String>,
    /// Any header of the first principal (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = header)]
    headers: Vec<(String, String)>,
    /// Cookie header of a second principal (isolation check).
    #[arg(long, value_name = "VALUE")]
    other_cookie: Option<String>,
    /// Any header of the second principal (repeatable).
    #[arg(long = "other-header", value_name = "'NAME: VALUE'", value_parser = header)]
    other_headers: Vec<(String, String)>,
    /// An HTTP request that creates a notification for the first
    /// principal; {token} in PATH or BODY is replaced by a unique token the
    /// checker looks for.
    #[arg(long, value_name = "'METHOD PATH BODY'")]
    publish: Option<String>,
    /// The same for the second principal.
    #[arg(long, value_name = "'METHOD PATH BODY'")]
    publish_other: Option<String>,
    /// Headers of the publish requests (repeatable); by default the first
    /// principal's credentials and content-type: application/json.
    #[arg(long = "publish-header", value_name = "'NAME: VALUE'", value_parser = header)]
    publish_headers: Vec<(String, String)>,
    /// A shell command that creates a notification for the first
    /// principal, with the token in $SSE_CHECK_TOKEN.
    #[arg(long, value_name = "COMMAND")]
    publish_cmd: Option<String>,
    /// The same for the second principal.
    #[arg(long, value_name = "COMMAND")]
    publish_other_cmd: Option<String>,
    /// Allowed time to the first body byte, in milliseconds.
    #[arg(long = "first-byte-ms", value_name = "N", default_value = "1000", value_parser = millis)]
    first_byte: Duration,
    /// Expected heartbeat interval in milliseconds (default: the connected
    /// event's heartbeatMs).
    #[arg(long = "heartbeat-ms", value_name = "N", value_parser = millis)]
    heartbeat: Option<Duration>,
    /// Allowed delivery time for a notification, in milliseconds.
    #[arg(long = "deliver-ms", value_name = "N", default_value = "2000", value_parser = millis)]
    deliver: Duration,
}

fn main() -> ExitCode {
    // `--help` and usage errors (exit status 2) are clap's.
    let Command::Check(args) = Cli::parse().command;
    let target = match target(args) {
        Ok(target) => target,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(check::run(&target));
    println!("{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Publish {
    first: Option<String>,
    second: Option<String>,
    headers: Vec<(String, String)>,
    first_cmd: Option<String>,
    second_cmd: Option<String>,
}

fn target(args: CheckArgs) -> Result<Target, String> {
    let mut target = Target::from_url(&args.url)?;
    let mut credentials: Vec<(String, String)> = args
        .cookie
        .map(|cookie| ("cookie".to_owned(), cookie))
        .into_iter()
        .collect();
    credentials.extend(args.headers);
    if credentials.is_empty() {
        return Err("give the first principal's credentials with --cookie or --header".into());
    }
    let mut other: Vec<(String, String)> = args
        .other_cookie
        .map(|cookie| ("cookie".to_owned(), cookie))
        .into_iter()
        .collect();
    other.extend(args.other_headers);
    let mut publish = Publish {
        first: args.publish,
        second: args.publish_other,
        headers: args.publish_headers,
        first_cmd: args.publish_cmd,
        second_cmd: args.publish_other_cmd,
    };
    if publish.headers.is_empty() {
        publish.headers = credentials.clone();
        publish
            .headers
            .push(("content-type".into(), "application/json".into()));
    }
    target.publish = publisher(&target.authority, publish)?;
    target.credentials = credentials;
    target.other_credentials = (!other.is_empty()).then_some(other);
    target.first_byte_within = args.first_byte;
    target.heartbeat_interval = args.heartbeat;
    target.deliver_within = args.deliver;
    Ok(target)
}

fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a header; write 'Name: value'"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn millis(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("takes a number of milliseconds, not {text:?}"))
}

fn request(spec: &str, headers: &[(String, String)]) -> Result<HttpPublish, String> {
    let mut parts = spec.splitn(3, ' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(format!("{spec:?}: write --publish 'METHOD PATH BODY'"));
    };
    Ok(HttpPublish {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: headers.to_vec(),
        body: parts.next().unwrap_or_default().to_owned(),
    })
}

fn publisher(authority: &str, publish: Publish) -> Result<Option<Publisher>, String> {
    if publish.first_cmd.is_some() || publish.second_cmd.is_some() {
        let commands = Arc::new((publish.first_cmd, publish.second_cmd));
        return Ok(Some(Arc::new(move |to, token| {
            let commands = commands.clone();
            Box::pin(async move {
                let command = match to {
                    Recipient::First => commands.0.clone(),
                    Recipient::Second => commands.1.clone(),
                }
                .ok_or("no publish command was given for this principal")?;
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&command)
                    .env("SSE_CHECK_TOKEN", &token)
                    .status()
                    .await
                    .map_err(|e| format!("running {command:?}: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("{command:?} exited with {status}"))
                }
            })
        })));
    }
    let Some(first) = publish.first else {
        return Ok(None);
    };
    let first = request(&first, &publish.headers)?;
    let second = publish
        .second
        .map(|s| request(&s, &publish.headers))
        .transpose()?;
    Ok(Some(check::http_publisher(authority, first, second)))
}
