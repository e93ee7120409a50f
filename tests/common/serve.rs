//! A running `epiflow serve` for the dashboard tests, and a client that
//! speaks HTTP/1.1 over a plain socket: requests go out byte for byte as
//! written (a path with `../` or `%2F` is not tidied up on the way, as a
//! library client would), and the event stream is read as it arrives.
#![allow(dead_code)]

use crate::common::{epiflow_ok, index_lines, paths_under, synth_store};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A store of 24 episodes (two held back from the index, to append later)
/// and its outputs with gbt models trained on the host split; built once,
/// copied by each test (every server writes its outputs).
pub fn fixture() -> &'static (tempfile::TempDir, Vec<String>) {
    static FIXTURE: OnceLock<(tempfile::TempDir, Vec<String>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = synth_store(&dir.path().join("store"), 24, 22, 40);
        let lines = index_lines(&store);
        let (kept, held) = lines.split_at(lines.len() - 2);
        std::fs::write(store.join("index.jsonl"), kept.join("\n") + "\n").unwrap();
        let config = dir.path().join("gbt.toml");
        std::fs::write(&config, "[train]\narchs = [\"gbt\"]\n").unwrap();
        let (s, o, c) = (store.to_str().unwrap(), dir.path().join("out"), config.to_str().unwrap());
        epiflow_ok(&["run", "--store", s, "--out", o.to_str().unwrap(), "--config", c, "--split", "host", "-q"], 0);
        (dir, held.to_vec())
    })
}

/// A copy of the fixture under `dir`: (store, out, the held-back index lines).
pub fn copy_fixture(dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    let (fixture, held) = fixture();
    for path in paths_under(fixture.path()) {
        let to = dir.join(path.strip_prefix(fixture.path()).unwrap());
        match path.is_dir() {
            true => std::fs::create_dir_all(&to).unwrap(),
            false => drop(std::fs::copy(&path, &to).unwrap()),
        }
    }
    (dir.join("store"), dir.join("out"), held.clone())
}

/// A served copy of the fixture: its store, outputs, held-back index lines,
/// the running server, and the folder holding them (removed when dropped:
/// bind it, as `dir: _dir`, for as long as the others are used).
pub struct Served {
    pub store: PathBuf,
    pub out: PathBuf,
    pub held: Vec<String>,
    pub server: Server,
    pub dir: tempfile::TempDir,
}

/// A copy of the fixture served on a free loopback port.
pub fn served() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (store, out, held) = copy_fixture(dir.path());
    let server = Server::start(&store, &out, &[]);
    Served { store, out, held, server, dir }
}

/// `epiflow serve` on a free loopback port; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The rest of its stdout (epoch lines go to stderr).
    pub stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts `serve` on `store` writing to `out`, with `extra` arguments
    /// (an `--addr` among them replaces the loopback default), and waits
    /// until it listens and has published the index it found.
    pub fn start(store: &Path, out: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"];
        if !extra.contains(&"--addr") {
            args.extend(["--addr", "127.0.0.1:0"]);
        }
        args.extend(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_epiflow"))
            .args(&args)
            .env_remove("RUST_LOG")
            .env_remove("EPIFLOW_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("dashboard on http://").and_then(|a| a.strip_suffix('/'));
        let addr: SocketAddr = addr.unwrap_or_else(|| panic!("serve printed {line:?}")).parse().unwrap();
        let server = Server { child, addr, stdout };
        // Ready once the first publication's `profiles` is out.
        let token = extra.iter().position(|a| *a == "--token").map(|i| format!("?token={}", extra[i + 1]));
        let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        let mut events = EventStream::open(local, &format!("/events{}", token.unwrap_or_default()), &[]);
        events.until(Duration::from_secs(120), |e| e.event == "profiles");
        server
    }

    /// A request; see [`request`].
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.addr, method, target, headers, body)
    }

    /// `GET target`, asserting a 200 with JSON; the JSON.
    pub fn get_json(&self, target: &str) -> serde_json::Value {
        let response = self.request("GET", target, &[], b"");
        assert_eq!(response.status, 200, "GET {target}: {}", response.text());
        response.json()
    }

    /// The first accepted episode the server lists.
    pub fn accepted(&self) -> (String, String) {
        let list = self.get_json("/api/episodes?outcome=accepted");
        let first = &list.as_array().unwrap()[0];
        (first["host_id"].as_str().unwrap().to_string(), first["episode_id"].as_str().unwrap().to_string())
    }

    /// `POST /api/replay` with `body`.
    pub fn replay(&self, body: &serde_json::Value) -> Response {
        let body = body.to_string();
        self.request("POST", "/api/replay", &[("content-type", "application/json")], body.as_bytes())
    }

    /// The event stream, resuming after `last_event_id` when given.
    pub fn events(&self, last_event_id: Option<u64>) -> EventStream {
        let id = last_event_id.map(|id| id.to_string());
        let headers: Vec<(&str, &str)> = id.iter().map(|id| ("last-event-id", id.as_str())).collect();
        EventStream::open(self.addr, "/events", &headers)
    }

    /// The value of Prometheus series `series` (its name with labels, as
    /// `/metrics` writes it), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.request("GET", "/metrics", &[], b"").text();
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one request exactly as given (`Connection: close`) and reads the
/// whole answer.
pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("content-length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body.
    let _ = stream.write_all(body);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    match chunked {
        true => {
            while let Some(chunk) = read_chunk(&mut reader) {
                body.extend(chunk);
            }
        }
        false => {
            let _ = reader.read_to_end(&mut body);
        }
    }
    Response { status, headers, body }
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    (status, headers)
}

/// One chunk of a chunked body; `None` at its end (or when the connection
/// closed).
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    if reader.read_line(&mut size).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(size.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// One Server-Sent Event.
#[derive(Clone, Debug, PartialEq)]
pub struct Sse {
    pub id: u64,
    pub event: String,
    pub data: serde_json::Value,
}

/// An open event stream, read event by event.
pub struct EventStream {
    pub status: u16,
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet split into events.
    pending: String,
}

impl EventStream {
    /// Opens `target` with `headers`.
    pub fn open(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> EventStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut head = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n");
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        stream.write_all(format!("{head}\r\n").as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader);
        EventStream { status, reader, pending: String::new() }
    }

    /// The next event within `wait`; `None` when none came or the server
    /// closed the stream. Comments and `retry:` lines are skipped.
    pub fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Some(event);
                }
                continue;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader.get_ref().set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let chunk = read_chunk(&mut self.reader)?;
            self.pending.push_str(&String::from_utf8(chunk).unwrap());
        }
    }

    /// Whether the server closed the stream: reads what is left until the
    /// end (true) or until nothing came for `wait` (false).
    pub fn closed(&mut self, wait: Duration) -> bool {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Events until one of type `event` satisfying `until` (included), each
    /// within `wait` of the one before; panics when the stream goes quiet.
    pub fn until(&mut self, wait: Duration, mut until: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self.next(wait).unwrap_or_else(|| panic!("the stream went quiet after {seen:#?}"));
            let done = until(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn parse_event(block: &str) -> Option<Sse> {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in block.lines() {
        match line.split_once(':') {
            Some(("id", v)) => id = v.trim().parse().ok(),
            Some(("event", v)) => event = Some(v.trim().to_string()),
            Some(("data", v)) => data = serde_json::from_str(v.trim()).ok(),
            _ => {}
        }
    }
    Some(Sse { id: id?, event: event?, data: data? })
}
