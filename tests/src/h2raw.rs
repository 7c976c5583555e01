//! HTTP/2 frames written by hand, for tests that must do what no
//! well-behaved client does: open more streams than the server allows, reset
//! them as fast as possible, send the preface a byte at a time.
//!
//! Header blocks use HPACK literals without Huffman coding (RFC 7541 §6.2.2),
//! so no encoder state is needed.

use std::time::Duration;

use anyhow::Result;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, tcp::OwnedReadHalf},
};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types used here.
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0;
    /// HEADERS.
    pub const HEADERS: u8 = 1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 4;
    /// GOAWAY.
    pub const GOAWAY: u8 = 7;
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// One frame: 9-byte header, then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The preface and an empty SETTINGS frame: what a client sends first.
pub fn handshake() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(kind::SETTINGS, 0, 0, &[]));
    out
}

/// SETTINGS ACK.
pub fn settings_ack() -> Vec<u8> {
    frame(kind::SETTINGS, ACK, 0, &[])
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(out: &mut Vec<u8>, text: &str) {
    hpack_int(out, 0, 7, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// A header block for a gRPC call of `path`, plus `extra` headers.
pub fn grpc_headers(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    hpack_int(&mut block, 0, 4, 4); // :path, literal without indexing
    hpack_string(&mut block, path);
    hpack_int(&mut block, 0, 4, 1); // :authority
    hpack_string(&mut block, "authd");
    hpack_int(&mut block, 0, 4, 31); // content-type
    hpack_string(&mut block, "application/grpc");
    for (name, value) in [("te", "trailers")].iter().chain(extra) {
        block.push(0);
        hpack_string(&mut block, name);
        hpack_string(&mut block, value);
    }
    block
}

/// A HEADERS frame opening `stream` for `path`, its body to follow unless
/// `end_stream`.
pub fn headers(stream: u32, path: &str, end_stream: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(kind::HEADERS, flags, stream, &grpc_headers(path, &[]))
}

/// A DATA frame.
pub fn data(stream: u32, payload: &[u8], end_stream: bool) -> Vec<u8> {
    frame(
        kind::DATA,
        if end_stream { END_STREAM } else { 0 },
        stream,
        payload,
    )
}

/// RST_STREAM with CANCEL.
pub fn cancel(stream: u32) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream, &8u32.to_be_bytes())
}

/// `message` with the 5-byte gRPC prefix (uncompressed).
pub fn grpc_message(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out
}

/// What the server sent on a connection, by frame type, until it closed or
/// the reading stopped.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Frames per type (index = type, up to 9).
    pub frames: [u64; 10],
    /// The GOAWAY error code, if one came.
    pub goaway: Option<u32>,
    /// Whether the server closed the connection.
    pub closed: bool,
}

/// Reads frames from `read` until the server closes or `within` passes.
pub async fn read_frames(mut read: OwnedReadHalf, within: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + within;
    let mut header = [0u8; 9];
    loop {
        let step = async {
            read.read_exact(&mut header).await?;
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            read.read_exact(&mut payload).await?;
            Ok::<_, std::io::Error>(payload)
        };
        match tokio::time::timeout_at(deadline, step).await {
            Err(_) => return seen,
            Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Ok(Ok(payload)) => {
                let kind = usize::from(header[3]);
                if let Some(count) = seen.frames.get_mut(kind) {
                    *count += 1;
                }
                if header[3] == kind::GOAWAY && payload.len() >= 8 {
                    seen.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
            }
        }
    }
}

/// A connection that has sent its handshake (and acknowledged nothing yet).
pub async fn connect(addr: std::net::SocketAddr) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(&handshake()).await?;
    Ok(tcp)
}
