//! Five addresses hold every connection the gateway has, each with what a connection can hold
//! longest (issue 23): queue WebSockets that went quiet in the middle of a large frame,
//! pipelined requests whose answers are never read, request bodies that trickle, and they keep
//! opening more. A real client is still served, its own quiet queue socket keeps its place, and
//! the guard's memory stays bounded. A test binary of its own: it measures
//! this process's resident memory.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;

use common::*;
use guard_gateway::{Gateway, Limits};

/// Bytes of the frame each quiet WebSocket sends, of the 250,000 its head announces.
const SENT: usize = 240_000;

#[test]
fn five_addresses_cannot_lock_out_a_real_client() {
    let (up, seen) = upstream();
    let g = Gateway::start(config(up, None, Limits::default())).unwrap();
    let addr = g.local_addr();
    // The real client's tab, waiting in the queue: a quiet socket too.
    let mut tab = Client::new(addr);
    let (h, _) = tab.ask("GET /queue/join", UPGRADE);
    assert!(h.starts_with("http/1.1 101"), "{h}");
    let join = r#"{"fn_index":7,"session_hash":"real-tab"}"#;
    assert_eq!(tab.frame(join), r#"{"msg":"process_starts"}"#);
    let before = rss_kib();
    let payload = vec![b'p'; SENT];
    let mut held = Vec::new();
    let (mut sockets, mut asking, mut trickling) = (0, 0, 0);
    // 80 connections from each of 127.0.0.2-6: 400, the gateway's whole room.
    for a in 2..=6u8 {
        for i in 0..80 {
            let mut c = Client::reading_nothing([127, 0, 0, a], addr);
            match i % 10 {
                0..=5 => {
                    let (h, _) = c.ask("GET /queue/join", UPGRADE);
                    assert!(h.starts_with("http/1.1 101"), "{h}");
                    c.w.write_all(&frame_head(250_000)).unwrap();
                    c.w.write_all(&payload).unwrap();
                    sockets += 1;
                }
                6 => {
                    // An answer larger than the kernel's buffers: it stays in flight.
                    let asks = "GET /huge HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(4);
                    c.w.write_all(asks.as_bytes()).unwrap();
                    asking += 1;
                }
                _ => {
                    write!(
                        c.w,
                        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nx"
                    )
                    .unwrap();
                    trickling += 1;
                }
            }
            held.push(c);
        }
    }
    seen.wait_for("GET /queue/join", sockets);
    seen.wait_for("GET /huge", asking);
    seen.wait_for("POST /upload", trickling);
    let frames = g.tap_bytes();
    let grown = rss_kib().saturating_sub(before);
    eprintln!(
        "{sockets} quiet sockets, {asking} unread answers, {trickling} trickling bodies: taps hold {frames} bytes, the process grew {grown} KiB"
    );
    // Each tap keeps at most a frame's first 4 KiB per direction (it kept up to 256 KiB).
    assert!(frames <= sockets * 2 * (4096 + 14), "{frames}");
    // 240 unfinished frames of 240 KB alone were 56 MiB before; the test's own upstream
    // threads and sockets are in this figure too.
    assert!(grown < 40 * 1024, "the process grew {grown} KiB");

    // The five keep opening connections meanwhile: each takes a place of its own address.
    let more: Vec<_> = (2..=6u8)
        .map(|a| {
            std::thread::spawn(move || {
                (0..100)
                    .map(|_| connect_from([127, 0, 0, a], addr, Some(4096)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for i in 0..20 {
        let (h, body) = Client::new(addr).ask("GET /config", "");
        assert!(
            h.starts_with("http/1.1 200") && body == "ok /config",
            "request {i} of the real client: {h:?}"
        );
    }
    let more: Vec<_> = more.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        tab.frame(join),
        r#"{"msg":"process_starts"}"#,
        "the real client's quiet queue socket kept its place"
    );
    drop((held, more));
}
