//! The tasks example: tasks kept in PostgreSQL through wasmCloud's `wasmcloud:postgres`
//! interface, as components built for wasmCloud's `sqldb-postgres` provider use it. Paths are
//! relative to the route (`/tasks`):
//!
//! - `POST /tasks?note=TEXT` with a JSON body adds a task and answers its row.
//! - `GET /tasks` lists the tasks, oldest first.
//! - `POST /tasks/done?id=UUID` marks one done through a prepared statement and answers
//!   `updated N`.
//! - `GET /tasks/wait?seconds=S` runs a statement that takes S seconds, to see the link's
//!   `timeout` cancel it.
//!
//! Rows are answered one `column=kind:value` line each, showing the PostgreSQL types as they
//! arrive (uuid, jsonb, text, timestamptz, bool). The table is made by a batch on each request.

use std::io::{Read as _, Write as _};

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/tasks",
        generate_all,
    });
}

use bindings::wasmcloud::postgres::prepared::{exec, prepare};
use bindings::wasmcloud::postgres::query::{query, query_batch};
use bindings::wasmcloud::postgres::types::{
    Date, PgValue, PreparedStatementExecError, QueryError, ResultRow, StatementPrepareError,
};

const MIGRATION: &str = "CREATE TABLE IF NOT EXISTS tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    data jsonb NOT NULL,
    note text,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    done boolean NOT NULL DEFAULT false
)";

struct Tasks;

wasi::http::proxy::export!(Tasks);

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("output stream is taken once");
        let _ = writeln!(stream, "{body}");
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

fn read_body(request: &IncomingRequest) -> String {
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume() {
        if let Ok(mut stream) = incoming.stream() {
            let _ = stream.read_to_end(&mut body);
        }
        IncomingBody::finish(incoming);
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn query_error(e: QueryError) -> String {
    match e {
        QueryError::InvalidParams(m) => format!("invalid params: {m}"),
        QueryError::InvalidQuery(m) => format!("invalid query: {m}"),
        QueryError::Unexpected(m) => format!("unexpected: {m}"),
    }
}

fn date(d: &Date) -> String {
    match d {
        Date::Ymd((y, m, d)) => format!("{y:04}-{m:02}-{d:02}"),
        Date::PositiveInfinity => "infinity".into(),
        Date::NegativeInfinity => "-infinity".into(),
    }
}

fn show(value: &PgValue) -> String {
    match value {
        PgValue::Null => "null".into(),
        PgValue::Uuid(u) => format!("uuid:{u}"),
        PgValue::Jsonb(j) => format!("jsonb:{j}"),
        PgValue::Json(j) => format!("json:{j}"),
        PgValue::Text(t) => format!("text:{t}"),
        PgValue::Bool(b) => format!("bool:{b}"),
        PgValue::Int8(i) => format!("int8:{i}"),
        PgValue::TimestampTz(t) => format!(
            "timestamptz:{}T{:02}:{:02}:{:02}",
            date(&t.timestamp.date),
            t.timestamp.time.hour,
            t.timestamp.time.min,
            t.timestamp.time.sec
        ),
        other => format!("other:{other:?}"),
    }
}

fn lines(rows: &[ResultRow]) -> String {
    rows.iter()
        .map(|row| {
            row.iter()
                .map(|entry| format!("{}={}", entry.column_name, show(&entry.value)))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// An `f64` as `hashable-f64`: mantissa, exponent and sign.
fn hashable(value: f64) -> (u64, i16, i8) {
    let bits = value.to_bits();
    let sign = if bits >> 63 == 0 { 1 } else { -1 };
    let exponent = ((bits >> 52) & 0x7ff) as i16;
    let fraction = bits & 0x000f_ffff_ffff_ffff;
    let mantissa = if exponent == 0 {
        fraction << 1
    } else {
        fraction | 0x0010_0000_0000_0000
    };
    (mantissa, exponent - 1075, sign)
}

fn param<'a>(query: &'a str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.replace("%20", " ").replace("%27", "'"))
    })
}

fn serve(request: &IncomingRequest) -> Result<(u16, String), String> {
    query_batch(MIGRATION).map_err(query_error)?;
    let path = request.path_with_query().unwrap_or_default();
    let (path, query_text) = path.split_once('?').unwrap_or((&path, ""));
    let rest: Vec<&str> = path.trim_matches('/').split('/').skip(1).collect();
    Ok(match (request.method(), rest.as_slice()) {
        (Method::Post, []) => {
            let data = PgValue::Jsonb(read_body(request));
            let note = param(query_text, "note").map_or(PgValue::Null, PgValue::Text);
            let rows = query(
                "INSERT INTO tasks (data, note) VALUES ($1, $2) \
                 RETURNING id, data, note, submitted_at, done",
                &[data, note],
            )
            .map_err(query_error)?;
            (201, lines(&rows))
        }
        (Method::Get, []) => {
            let rows = query(
                "SELECT id, data, note, submitted_at, done FROM tasks ORDER BY submitted_at, id",
                &[],
            )
            .map_err(query_error)?;
            (200, lines(&rows))
        }
        (Method::Get, ["wait"]) => {
            let seconds: f64 = param(query_text, "seconds")
                .and_then(|s| s.parse().ok())
                .ok_or("give ?seconds=S")?;
            let rows = query(
                "SELECT 1::bigint AS waited FROM pg_sleep($1)",
                &[PgValue::Float8(hashable(seconds))],
            )
            .map_err(query_error)?;
            (200, lines(&rows))
        }
        (Method::Post, ["done"]) => {
            let id = param(query_text, "id").ok_or("give ?id=UUID")?;
            let token = prepare("UPDATE tasks SET done = true WHERE id = $1").map_err(
                |StatementPrepareError::Unexpected(m)| format!("cannot prepare: {m}"),
            )?;
            let updated = exec(&token, &[PgValue::Uuid(id)]).map_err(|e| match e {
                PreparedStatementExecError::QueryError(e) => query_error(e),
                PreparedStatementExecError::UnknownPreparedQuery => "unknown statement".into(),
                PreparedStatementExecError::Unexpected(m) => format!("unexpected: {m}"),
            })?;
            (200, format!("updated {updated}"))
        }
        _ => (404, "use POST /tasks, GET /tasks, POST /tasks/done?id=UUID".into()),
    })
}

impl wasi::exports::http::incoming_handler::Guest for Tasks {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match serve(&request) {
            Ok((status, body)) => respond(out, status, &body),
            Err(message) if message.starts_with("invalid params") => respond(out, 400, &message),
            Err(message) => respond(out, 500, &message),
        }
    }
}
