use fooocus_console::{parse_log, ConsoleParser, Event, EventKind};
use proptest::prelude::*;

fn events(text: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    parse_log(text.as_bytes(), |e| {
        out.push((e.line, serde_json::to_string(&e.kind).unwrap()))
    })
    .unwrap();
    out
}

fn kinds(text: &str) -> Vec<(u64, &'static str)> {
    let mut out = Vec::new();
    parse_log(text.as_bytes(), |e| out.push((e.line, e.kind.name()))).unwrap();
    out
}

const V25: &str = "Already up-to-date\nUpdate succeeded.\nFooocus version: 2.5.5\nLoaded preset: /x/presets/default.json\n\
Total VRAM 8192 MB, total RAM 15916 MB\nSet vram state to: NORMAL_VRAM\n\
Downloading: \"https://x/model.safetensors\" to /m\n100%|██████████| 6.46G/6.46G [01:02<00:00, 111MB/s]\n\
Running on local URL:  http://127.0.0.1:7865\nStarted worker with PID 1234\n\
App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n\
Enter LCM mode.\n[Parameters] Adaptive CFG = 7\n[Prompt Expansion] a secret prompt, highly detailed\n\
[Fooocus] Preparing task 1/2 ...\n 10%|█         | 1/10 [00:01<00:09,  1.0s/it]\r 20%|██        | 2/10 [00:02<00:08,  1.0s/it]\n\
Generating and saving time: 27.03 seconds\n[Fooocus] Preparing task 2/2 ...\nUser stopped\nTotal time: 30.50 seconds\n";

#[test]
fn fooocus_25_events_at_their_lines() {
    assert_eq!(
        kinds(V25),
        vec![
            (3, "version"),
            (9, "listening"),
            (11, "ready"),
            (12, "task_start"),
            (15, "image_start"),
            (16, "progress"),
            (16, "progress"),
            (17, "image_done"),
            (18, "image_start"),
            (19, "stopped"),
            (20, "task_end"),
        ]
    );
    let ev = events(V25);
    assert_eq!(
        ev[1].1,
        r#"{"kind":"listening","url":"http://127.0.0.1:7865"}"#
    );
    assert_eq!(ev[2].1, r#"{"kind":"ready","url":"http://127.0.0.1:7865"}"#);
    assert_eq!(ev[4].1, r#"{"kind":"image_start","index":1,"total":2}"#);
    assert_eq!(ev[6].1, r#"{"kind":"progress","step":2,"total":10}"#);
    assert_eq!(ev[7].1, r#"{"kind":"image_done","seconds":27.03}"#);
    assert_eq!(ev[10].1, r#"{"kind":"task_end","seconds":30.5}"#);
}

#[test]
fn fooocus_20_images_from_encodings() {
    let log = "[Fooocus] Initializing ...\n[Fooocus] Encoding positive #1 ...\n[Fooocus] Encoding positive #2 ...\n\
Preparation time: 3.1 seconds\n 50%|█████     | 15/30 [00:10<00:10,  1.4it/s]\n100%|██████████| 30/30 [00:20<00:00,  1.4it/s]\n\
Generating and saving time: 21.5 seconds\n  3%|▎         | 1/30 [00:01<00:30,  1.0s/it]\nTotal time: 50.0 seconds\n";
    let k = kinds(log);
    assert_eq!(
        k,
        vec![
            (1, "task_start"),
            (5, "image_start"),
            (5, "progress"),
            (6, "progress"),
            (7, "image_done"),
            (8, "image_start"),
            (8, "progress"),
            (9, "task_end")
        ]
    );
    let ev = events(log);
    assert_eq!(ev[5].1, r#"{"kind":"image_start","index":2,"total":2}"#);
}

#[test]
fn tracebacks_stay_together_and_oom_is_told() {
    let log = "[Parameters] Adaptive CFG = 7\nTraceback (most recent call last):\n  File \"/f/modules/async_worker.py\", line 1, in worker\n    handler(task)\n\
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\nTotal time: 3.0 seconds\n";
    let ev = events(log);
    assert_eq!(ev[1].0, 2);
    assert!(ev[1].1.starts_with(r#"{"kind":"error","exception":"torch.cuda.OutOfMemoryError","message":"CUDA out of memory. Tried to allocate 2.00 GiB""#), "{}", ev[1].1);
    assert_eq!(
        ev[2],
        (
            2,
            r#"{"kind":"oom","message":"CUDA out of memory. Tried to allocate 2.00 GiB"}"#
                .to_string()
        )
    );
    assert_eq!(ev[3].0, 6);
}

#[test]
fn chained_traceback_is_one_error_with_the_last_exception() {
    let log = "Traceback (most recent call last):\n  File \"a\", line 1\nKeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\n\
Traceback (most recent call last):\n  File \"b\", line 2\nRuntimeError: CUDA error: out of memory\nnext line\n";
    let k = kinds(log);
    assert_eq!(k, vec![(1, "error"), (1, "oom")]);
    assert!(events(log)[0].1.contains("RuntimeError"));
}

#[test]
fn dead_worker_and_cpu_allocator() {
    let log = "Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n  File \"x\", line 1\n\
ImportError: cannot import name 'x'\nRuntimeError: [enforce fail at alloc_cpu.cpp:83] : DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes.\n";
    let k = kinds(log);
    assert_eq!(k[0], (1, "worker_died"));
    assert_eq!(k[1], (2, "error"));
    assert!(k.contains(&(5, "oom")), "{k:?}");
}

#[test]
fn fooocus_api_lines() {
    let log = "INFO:     Uvicorn running on http://127.0.0.1:8888 (Press CTRL+C to quit)\n[Task Queue] Task queue start task, job_id=abc\n\
 10%|█         | 1/10 [00:01<00:09,  1.0s/it]\n[Task Queue] Finish task, job_id=abc\n[Task Queue] Task queue start task, job_id=d\n[Task Queue] Finish task with error, CUDA out of memory\n";
    let ev = events(log);
    let k: Vec<_> = kinds(log);
    assert_eq!(
        k,
        vec![
            (1, "listening"),
            (1, "ready"),
            (2, "task_start"),
            (3, "image_start"),
            (3, "progress"),
            (4, "task_end"),
            (5, "task_start"),
            (6, "error"),
            (6, "oom"),
            (6, "task_end")
        ]
    );
    assert_eq!(ev[1].1, r#"{"kind":"ready","url":"http://127.0.0.1:8888"}"#);
    assert_eq!(ev[5].1, r#"{"kind":"task_end","seconds":null}"#);
}

#[test]
fn download_bars_and_idle_bars_are_not_steps() {
    let log = "100%|██████████| 6.46G/6.46G [01:02<00:00, 111MB/s]\n 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]\n";
    assert!(kinds(log).is_empty(), "no task: no progress");
}

fn all_events(chunks: &[Vec<u8>]) -> Vec<Event> {
    let mut p = ConsoleParser::new();
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c, &mut out);
    }
    p.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunking_never_changes_the_events(cuts in proptest::collection::vec(0usize..V25.len(), 0..12)) {
        let bytes = V25.as_bytes();
        let mut cuts = cuts;
        cuts.sort();
        let mut chunks = Vec::new();
        let mut last = 0;
        for c in cuts { chunks.push(bytes[last..c].to_vec()); last = c; }
        chunks.push(bytes[last..].to_vec());
        prop_assert_eq!(all_events(&chunks), all_events(&[bytes.to_vec()]));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_memory_stays_bounded(data in proptest::collection::vec(any::<u8>(), 0..4096), reps in 1usize..64) {
        let mut p = ConsoleParser::new();
        let mut out = Vec::new();
        for _ in 0..reps {
            p.feed(&data, &mut out);
            prop_assert!(p.buffered() <= fooocus_console::DEFAULT_MAX_LINE);
            out.clear();
        }
        p.finish(&mut out);
        for e in &out {
            if let EventKind::Error { traceback, .. } = &e.kind {
                prop_assert!(traceback.len() <= fooocus_console::MAX_TRACEBACK_LINES);
            }
        }
    }
}
