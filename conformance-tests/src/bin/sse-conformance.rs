//! `sse-conformance check`: the black-box checker for a deployed stream.
//! Run `sse-conformance check --help` for the options.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sse_conformance::check::{self, HttpPublish, Publisher, Recipient, Target};

const USAGE: &str = "\
sse-conformance check --url URL [options]

Checks a deployed event-stream endpoint: headers, first-byte latency,
framing, heartbeat, 401 without credentials, 405, and (given a way to
publish) live delivery, Last-Event-ID replay and isolation between two
principals. Prints a table; exits 0 when every check passed, 1 when one
failed, 2 on a usage error.

Options:
  --url URL                 the stream, http://host:port/path?query (required)
  --cookie VALUE            Cookie header of the first principal (e.g. 'sid=abc')
  --header 'NAME: VALUE'    any header of the first principal (repeatable)
  --other-cookie VALUE      Cookie header of a second principal (isolation check)
  --other-header 'N: V'     any header of the second principal (repeatable)
  --publish 'METHOD PATH BODY'
                            an HTTP request that creates a notification for the
                            first principal; {token} in PATH or BODY is replaced
                            by a unique token the checker looks for
  --publish-other 'METHOD PATH BODY'
                            the same for the second principal
  --publish-header 'N: V'   headers of the publish requests (repeatable); by
                            default the first principal's credentials and
                            content-type: application/json
  --publish-cmd COMMAND     a shell command that creates a notification for the
                            first principal, with the token in $SSE_CHECK_TOKEN
  --publish-other-cmd COMMAND
                            the same for the second principal
  --first-byte-ms N         allowed time to the first body byte (default 1000)
  --heartbeat-ms N          expected heartbeat interval (default: the connected
                            event's heartbeatMs)
  --deliver-ms N            allowed delivery time for a notification (default 2000)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => {}
        Some("-h" | "--help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let target = match parse(&args[1..]) {
        Ok(Some(target)) => target,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("error: {why}\n\n{USAGE}");
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

#[derive(Default)]
struct Publish {
    first: Option<String>,
    second: Option<String>,
    headers: Vec<(String, String)>,
    first_cmd: Option<String>,
    second_cmd: Option<String>,
}

fn parse(args: &[String]) -> Result<Option<Target>, String> {
    let mut url = None;
    let mut credentials = Vec::new();
    let mut other: Option<Vec<(String, String)>> = None;
    let mut publish = Publish::default();
    let mut first_byte = None;
    let mut heartbeat = None;
    let mut deliver = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--cookie" => credentials.push(("cookie".to_owned(), value()?)),
            "--header" => credentials.push(header(&value()?)?),
            "--other-cookie" => other
                .get_or_insert_with(Vec::new)
                .push(("cookie".to_owned(), value()?)),
            "--other-header" => other.get_or_insert_with(Vec::new).push(header(&value()?)?),
            "--publish" => publish.first = Some(value()?),
            "--publish-other" => publish.second = Some(value()?),
            "--publish-header" => publish.headers.push(header(&value()?)?),
            "--publish-cmd" => publish.first_cmd = Some(value()?),
            "--publish-other-cmd" => publish.second_cmd = Some(value()?),
            "--first-byte-ms" => first_byte = Some(millis(flag, &value()?)?),
            "--heartbeat-ms" => heartbeat = Some(millis(flag, &value()?)?),
            "--deliver-ms" => deliver = Some(millis(flag, &value()?)?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let mut target = Target::from_url(&url)?;
    if credentials.is_empty() {
        return Err("give the first principal's credentials with --cookie or --header".into());
    }
    if publish.headers.is_empty() {
        publish.headers = credentials.clone();
        publish
            .headers
            .push(("content-type".into(), "application/json".into()));
    }
    target.publish = publisher(&target.authority, publish)?;
    target.credentials = credentials;
    target.other_credentials = other;
    if let Some(d) = first_byte {
        target.first_byte_within = d;
    }
    target.heartbeat_interval = heartbeat;
    if let Some(d) = deliver {
        target.deliver_within = d;
    }
    Ok(Some(target))
}

fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a header; write 'Name: value'"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn millis(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{flag} takes a number of milliseconds, not {text:?}"))
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
