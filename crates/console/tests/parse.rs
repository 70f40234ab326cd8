use fooocus_console::{parse_log, ConsoleParser, Event, EventKind};
use proptest::prelude::*;

/// Events of a saved log but its phases (their own tests below read them with `phases`).
fn events(text: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    parse_log(text.as_bytes(), |e| {
        if !matches!(e.kind, EventKind::Phase { .. }) {
            out.push((e.line, serde_json::to_string(&e.kind).unwrap()))
        }
    })
    .unwrap();
    out
}

fn kinds(text: &str) -> Vec<(u64, &'static str)> {
    let mut out = Vec::new();
    parse_log(text.as_bytes(), |e| {
        if !matches!(e.kind, EventKind::Phase { .. }) {
            out.push((e.line, e.kind.name()))
        }
    })
    .unwrap();
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
            (7, "activity"),
            (8, "activity"),
            (9, "listening"),
            (10, "worker_started"),
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
    let ev: Vec<_> = events(V25)
        .into_iter()
        .filter(|e| !e.1.contains("activity") && !e.1.contains("worker_started"))
        .collect();
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

/// Without the activity events, which tests of other kinds leave out.
fn kinds_no_activity(text: &str) -> Vec<(u64, &'static str)> {
    kinds(text)
        .into_iter()
        .filter(|(_, k)| *k != "activity")
        .collect()
}

#[test]
fn fooocus_21_images_from_encodings_and_bars_ended_by_newlines() {
    let log = "[Fooocus] Initializing ...\n[Fooocus] Encoding positive #1 ...\n[Fooocus] Encoding positive #2 ...\n\
Preparation time: 3.1 seconds\n 50%|█████     | 15/30 [00:10<00:10,  1.4it/s]\n100%|██████████| 30/30 [00:20<00:00,  1.4it/s]\n\
Generating and saving time: 21.5 seconds\n  3%|▎         | 1/30 [00:01<00:30,  1.0s/it]\nTotal time: 50.0 seconds\n";
    let k = kinds(log);
    assert_eq!(
        k,
        vec![
            (1, "task_start"),
            (2, "activity"),
            (3, "activity"),
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
    assert_eq!(ev[7].1, r#"{"kind":"image_start","index":2,"total":2}"#);
    assert_eq!(ev[1].1, r#"{"kind":"activity","what":"task"}"#);
}

/// 2.0.78 and MRE (`v2.0.780/modules/async_worker.py:300,359`): `Encoding base positive #k`,
/// and `Diffusion time` ends each image.
#[test]
fn fooocus_20_base_encodings_and_diffusion_time() {
    let log = "[Fooocus] Initializing ...\n[Fooocus] Encoding base positive #1 ...\n[Fooocus] Encoding base positive #2 ...\n\
  0%|          | 0/30 [00:00<?, ?it/s]\r 50%|█████     | 15/30 [00:10<00:10,  1.4it/s]\r100%|██████████| 30/30 [00:20<00:00,  1.4it/s]\n\
Diffusion time: 22.51 seconds\nImage generated with private log at: /f/outputs/2023-09-01/log.html\n\
 50%|█████     | 15/30 [00:10<00:10,  1.4it/s]\nDiffusion time: 20.00 seconds\nTotal time: 50.0 seconds\n";
    let k = kinds_no_activity(log);
    assert_eq!(
        k,
        vec![
            (1, "task_start"),
            (4, "image_start"),
            (4, "progress"),
            (4, "progress"),
            (4, "progress"),
            (5, "image_done"),
            (7, "image_start"),
            (7, "progress"),
            (8, "image_done"),
            (9, "task_end")
        ]
    );
    let ev = events(log);
    let starts: Vec<_> = ev.iter().filter(|e| e.1.contains("image_start")).collect();
    assert_eq!(starts[0].1, r#"{"kind":"image_start","index":1,"total":2}"#);
    assert_eq!(starts[1].1, r#"{"kind":"image_start","index":2,"total":2}"#);
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
    let log = "Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n  File \"x\", line 1, in worker\n\
ImportError: cannot import name 'x'\nRuntimeError: [enforce fail at alloc_cpu.cpp:83] : DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes.\n";
    let k = kinds(log);
    assert_eq!(k[0], (1, "worker_died"));
    assert_eq!(k[1], (2, "error"));
    assert!(k.contains(&(5, "oom")), "{k:?}");
}

/// Python 3.9 and older print no function name; the traceback through `in worker` decides.
#[test]
fn worker_death_is_decided_by_its_traceback() {
    let py38 = concat!(
        "Exception in thread Thread-2:\nTraceback (most recent call last):\n",
        "  File \"/usr/lib/python3.8/threading.py\", line 932, in _bootstrap_inner\n    self.run()\n",
        "  File \"/f/modules/async_worker.py\", line 614, in worker\n    handler(task)\nRuntimeError: boom\n"
    );
    assert_eq!(kinds(py38), vec![(1, "worker_died"), (2, "error")]);
    let api = "Exception in thread Thread-3 (task_schedule_loop):\nTraceback (most recent call last):\n  File \"/a/fooocusapi/worker.py\", line 50, in task_schedule_loop\n    process_top()\nValueError: x\n";
    assert_eq!(kinds(api), vec![(1, "worker_died"), (2, "error")]);
    let other = "Exception in thread Thread-5:\nTraceback (most recent call last):\n  File \"/x/gradio/utils.py\", line 9, in run\n    f()\nValueError: x\n";
    assert_eq!(kinds(other), vec![(2, "error")]);
}

/// Fooocus-API 0.4+: `[ts] LEVEL    message` (`fooocusapi/utils/logger.py`); no "Finish task"
/// after a Stop or an error in the image loop (`worker.py:1014-1037`).
#[test]
fn fooocus_api_04_logger_prefix_and_ends_without_finish() {
    let log = "INFO:     Uvicorn running on http://127.0.0.1:8888 (Press CTRL+C to quit)\n\
[2024-05-18 15:06:57] INFO     [Task Queue] Task queue start task, job_id=a1\n\
[2024-05-18 15:06:57] WARNING  [Fooocus] Enter LCM mode.\n\
[2024-05-18 15:06:57] INFO     [Parameters] Adaptive CFG = 7\n\
[2024-05-18 15:06:58] INFO     [Fooocus] Encoding positive #1 ...\n\
 33%|███▎      | 1/3 [00:01<00:02,  1.0s/it]\n\
[2024-05-18 15:07:00] INFO     [Fooocus] Generating and saving time: 17.03 seconds\n\
[2024-05-18 15:07:00] INFO     [Task Queue] Finish task, job_id=a1\n\
[2024-05-18 15:07:01] INFO     [Task Queue] Task queue start task, job_id=a2\n\
 33%|███▎      | 1/3 [00:01<00:02,  1.0s/it]\n\
[2024-05-18 15:07:02] WARNING  [Fooocus] User stopped\n\
[2024-05-18 15:07:03] INFO     [Task Queue] Task queue start task, job_id=a3\n\
 33%|███▎      | 1/3 [00:01<00:02,  1.0s/it]\n\
[2024-05-18 15:07:04] ERROR    [Fooocus] Process error: CUDA out of memory.\n\
[2024-05-18 15:07:04] ERROR    CUDA out of memory.\n\
Traceback (most recent call last):\n  File \"/a/fooocusapi/worker.py\", line 990, in process_generate\n\
torch.cuda.OutOfMemoryError: CUDA out of memory.\n\
[2024-05-18 15:07:05] INFO     [Task Queue] Task queue start task, job_id=a4\n\
 33%|███▎      | 1/3 [00:01<00:02,  1.0s/it]\n\
[2024-05-18 15:07:06] INFO     [Task Queue] Task queue start task, job_id=a5\n";
    assert_eq!(
        kinds_no_activity(log),
        vec![
            (1, "listening"),
            (1, "ready"),
            (2, "task_start"),
            (6, "image_start"),
            (6, "progress"),
            (7, "image_done"),
            (8, "task_end"),
            (9, "task_start"),
            (10, "image_start"),
            (10, "progress"),
            (11, "stopped"),
            (11, "task_end"),
            (12, "task_start"),
            (13, "image_start"),
            (13, "progress"),
            (16, "error"),
            (16, "oom"),
            (16, "task_end"),
            (19, "task_start"),
            (20, "image_start"),
            (20, "progress"),
            (21, "task_end"),
            (21, "task_start"),
        ]
    );
}

/// 0.5 (`worker.py:299,1066-1070`): `Start task`, and `Finish task` also after a Stop.
#[test]
fn fooocus_api_05_ends_at_finish_after_a_stop() {
    let log = "[2024-05-18 15:07:03] INFO     [Task Queue] Start task, job_id=a3, pid=7\n\
 33%|███▎      | 1/3 [00:01<00:02,  1.0s/it]\nUser stopped\n[Enhance] Skipping, preconditions aren't met\n\
[2024-05-18 15:07:04] INFO     [Task Queue] Finish task, job_id=a3\nProcessing time (total): 3.00 seconds\n\
[2024-05-18 15:07:05] INFO     [Task Queue] Start task, job_id=a4, pid=7\n\
[2024-05-18 15:07:06] ERROR    [Task Queue] Finish task with error: CUDA out of memory. Tried to allocate 2.00 GiB, job_id=a4\n";
    assert_eq!(
        kinds_no_activity(log),
        vec![
            (1, "task_start"),
            (2, "image_start"),
            (2, "progress"),
            (3, "stopped"),
            (5, "task_end"),
            (7, "task_start"),
            (8, "error"),
            (8, "oom"),
            (8, "task_end"),
        ]
    );
}

/// 0.3.33 (`worker.py:124,130,917`): plain lines.
#[test]
fn fooocus_api_lines() {
    let log = "INFO:     Uvicorn running on http://127.0.0.1:8888 (Press CTRL+C to quit)\n[Task Queue] Task queue start task, job_id=abc\n\
 10%|█         | 1/10 [00:01<00:09,  1.0s/it]\n[Task Queue] Finish task, job_id=abc\n[Task Queue] Task queue start task, job_id=d\n[Task Queue] Finish task with error, job_id=d\n";
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
            (6, "task_end")
        ]
    );
    assert_eq!(ev[1].1, r#"{"kind":"ready","url":"http://127.0.0.1:8888"}"#);
    assert_eq!(ev[5].1, r#"{"kind":"task_end","seconds":null}"#);
}

#[test]
fn download_bars_are_activity_and_a_bar_outside_a_task_is_a_step() {
    let log = "100%|██████████| 6.46G/6.46G [01:02<00:00, 111MB/s]\nFetching 3 files: 100%|██████████| 3/3 [00:00<00:00, 3.1it/s]\n 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]\n";
    let ev = events(log);
    assert_eq!(
        ev[0],
        (1, r#"{"kind":"activity","what":"download"}"#.to_string())
    );
    assert_eq!(
        ev[1],
        (2, r#"{"kind":"activity","what":"download"}"#.to_string())
    );
    assert_eq!(
        ev[2],
        (3, r#"{"kind":"progress","step":5,"total":10}"#.to_string())
    );
    assert_eq!(ev.len(), 3);
}

#[test]
fn model_loads_and_downloads_inside_a_task_are_activity() {
    let log = "[Parameters] Adaptive CFG = 7\n[Fooocus] Downloading LCM components ...\n\
Downloading: \"https://h/sdxl_lcm_lora.safetensors\" to /m/sdxl_lcm_lora.safetensors\n\
 10%|█         | 39.0M/394M [00:03<00:30, 12.1MB/s]\rRequested to load SDXL\nLoading 1 new model\n\
[Fooocus Model Management] Moving model(s) has taken 1.37 seconds\n";
    let ev = events(log);
    let what: Vec<_> = ev.iter().map(|e| (e.0, e.1.as_str())).collect();
    assert_eq!(
        what,
        vec![
            (1, r#"{"kind":"task_start"}"#),
            (2, r#"{"kind":"activity","what":"download"}"#),
            (3, r#"{"kind":"activity","what":"download"}"#),
            (4, r#"{"kind":"activity","what":"download"}"#),
            (4, r#"{"kind":"activity","what":"model_load"}"#),
            (5, r#"{"kind":"activity","what":"model_load"}"#),
            (6, r#"{"kind":"activity","what":"model_load"}"#),
        ]
    );
}

/// A merged saved log: the next stdout line glued after a bar (#2225, #535).
#[test]
fn markers_glued_after_a_bar_are_seen() {
    let log = "[Parameters] Adaptive CFG = 7\n[Fooocus] Encoding positive #1 ...\n 27%|██▋       | 8/30 [00:03<00:10,  2.00it/s]Refiner Swapped\n\
100%|██████████| 30/30 [00:12<00:00,  2.40it/s]Generating and saving time: 13.20 seconds\n\
  0%|          | 0/30 [00:00<?, ?it/s]C:\\f\\brownian_interval.py:594: UserWarning: Should have tb<=t1\nTotal time: 14.00 seconds\n";
    assert_eq!(
        kinds(log),
        vec![
            (1, "task_start"),
            (2, "activity"),
            (3, "image_start"),
            (3, "progress"),
            (3, "activity"),
            (4, "progress"),
            (4, "image_done"),
            (5, "image_start"),
            (5, "progress"),
            (6, "task_end"),
        ]
    );
}

#[test]
fn a_line_of_endless_glued_bars_is_read_without_recursion() {
    let bar = " 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]";
    let log = format!("[Parameters] Adaptive CFG = 7\n{}\n", bar.repeat(200));
    let ev = events(&log);
    assert_eq!(ev.iter().filter(|e| e.1.contains("progress")).count(), 200);
}

/// 2.5 (`v2.5.5/modules/async_worker.py:1316,1361,1437,1460`): Enhance runs the sampler again
/// per region, and its steps are progress (a stall limit must not fire during a long enhance),
/// but never a new image of the task.
#[test]
fn enhance_steps_are_progress_not_images() {
    let log = "[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/1 ...\n 50%|█████     | 1/2 [00:01<00:01,  1.0s/it]\n\
Generating and saving time: 3.00 seconds\n[Fooocus] Processing enhance ...\n[Fooocus] Preparing enhancement 1/1 ...\n\
 50%|█████     | 1/2 [00:01<00:01,  1.0s/it]\nEnhancement time: 2.00 seconds\nEnhancement image time: 2.10 seconds\n\
Processing time (total): 6.00 seconds\nTotal time: 6.10 seconds\n";
    assert_eq!(
        kinds(log),
        vec![
            (1, "task_start"),
            (2, "image_start"),
            (3, "progress"),
            (4, "image_done"),
            (5, "activity"),
            (6, "activity"),
            (7, "progress"),
            (8, "activity"),
            (9, "activity"),
            (11, "task_end"),
        ]
    );
    assert_eq!(
        events(log)[6],
        (7, r#"{"kind":"progress","step":1,"total":2}"#.to_string())
    );
    assert!(events(log)[4].1.contains("enhance"));
    // An enhance-only task (an input image, no images of its own) has no image either.
    let only = "[Parameters] Adaptive CFG = 7\n[Fooocus] Processing enhance ...\n\
[Fooocus] Preparing enhancement 1/1 ...\n 50%|█████     | 1/2 [00:01<00:01,  1.0s/it]\n";
    assert_eq!(
        kinds_no_activity(only),
        vec![(1, "task_start"), (4, "progress")]
    );
}

/// Gradio with an explicit port (`networking.py`): a taken port is its own event.
#[test]
fn a_taken_port_and_the_worker_pid() {
    let log = "Started worker with PID 4242\nTraceback (most recent call last):\n  File \"/f/webui.py\", line 1, in <module>\n    shared.gradio_root.launch(\n\
OSError: Cannot find empty port in range: 7865-7865. You can specify a different port by setting the GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to `launch()`.\n";
    let ev = events(log);
    assert_eq!(
        ev[0],
        (1, r#"{"kind":"worker_started","pid":4242}"#.to_string())
    );
    assert!(ev[1]
        .1
        .starts_with(r#"{"kind":"error","exception":"OSError""#));
    assert_eq!(
        ev[2],
        (2, r#"{"kind":"port_taken","port":7865}"#.to_string())
    );
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

/// A worker thread that dies prints its traceback and then nothing: the stream going quiet
/// completes it (the live guard settles a quiet stream), a chained one still waits.
#[test]
fn a_quiet_stream_completes_a_traceback_whose_exception_was_seen() {
    let mut p = ConsoleParser::new();
    let mut out = Vec::new();
    p.feed(
        b"Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n  File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n    self.run()\n  File \"/c/Fooocus/modules/async_worker.py\", line 390, in worker\n    handler(task)\nImportError: cannot import name 'xformers'\n",
        &mut out,
    );
    // The death is told from the frames at once; the error waits for the traceback's end.
    let kinds: Vec<&str> = out.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["worker_died"], "{out:?}");
    out.clear();
    p.settle(&mut out);
    let kinds: Vec<&str> = out.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["error"], "{out:?}");

    let mut p = ConsoleParser::new();
    let mut out = Vec::new();
    p.feed(
        b"Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nKeyError: 1\n\nDuring handling of the above exception, another exception occurred:\n\n",
        &mut out,
    );
    p.settle(&mut out);
    assert!(out.is_empty(), "a chained traceback goes on: {out:?}");
}

#[test]
fn every_kind_name_is_its_serde_tag() {
    let kinds = [
        EventKind::Listening { url: "u".into() },
        EventKind::Ready { url: "u".into() },
        EventKind::Version {
            version: "v".into(),
        },
        EventKind::TaskStart,
        EventKind::ImageStart { index: 1, total: 1 },
        EventKind::Progress { step: 1, total: 1 },
        EventKind::ImageDone { seconds: 1.0 },
        EventKind::TaskEnd { seconds: None },
        EventKind::Stopped,
        EventKind::Skipped,
        EventKind::Error {
            exception: "E".into(),
            message: "m".into(),
            traceback: vec![],
        },
        EventKind::Oom {
            message: "m".into(),
        },
        EventKind::WorkerDied,
        EventKind::Activity {
            what: "task".into(),
        },
        EventKind::PortTaken { port: 7865 },
        EventKind::WorkerStarted { pid: 1 },
        EventKind::Phase {
            phase: fooocus_console::Phase::ModelLoad,
        },
        EventKind::KnownFailure {
            failure: fooocus_console::KnownFailure::GpuTooNew,
        },
    ];
    for k in kinds {
        let v = serde_json::to_value(&k).unwrap();
        assert_eq!(v["kind"], k.name());
        assert_eq!(serde_json::from_value::<EventKind>(v).unwrap(), k);
    }
    use fooocus_console::{KnownFailure, Phase};
    for p in [
        Phase::ModelLoad,
        Phase::Preparation,
        Phase::Sampling,
        Phase::Decode,
        Phase::Saving,
    ] {
        assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
    }
    for f in [KnownFailure::GpuTooNew, KnownFailure::FileLocked] {
        assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
    }
}

/// A dead worker prints nothing after its traceback: the death is told from its frames, not
/// when a later line closes the traceback.
#[test]
fn a_dead_worker_is_told_before_its_traceback_ends() {
    let mut p = fooocus_console::Parser::new();
    let mut out = Vec::new();
    for (i, l) in [
        "Exception in thread Thread-2 (worker):",
        "Traceback (most recent call last):",
        "  File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner",
        "    self.run()",
        "  File \"/f/modules/async_worker.py\", line 25, in worker",
        "    import modules.default_pipeline as pipeline",
        "ImportError: cannot import name 'x'",
    ]
    .iter()
    .enumerate()
    {
        p.feed_line(i as u64 + 1, l, &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].kind, EventKind::WorkerDied);
    assert_eq!(out[0].line, 1);
}

// --- What Fooocus prints is data: a prompt echoed on the console writes no event. ---
//
// Fooocus echoes prompts in lines of its own (`[Prompt Expansion] <prompt>, <expansion>`) and
// 2.5 echoes its Enhance detection prompt verbatim, new lines included (`[Enhance] Searching
// for "<prompt>"`), so a prompt can put text anywhere in a line, and (multi-line) at the start
// of lines of its own.

/// Events of `lines` fed to a parser of `source`, as (line, kind).
fn kinds_from(source: fooocus_console::Source, text: &str) -> Vec<(u64, &'static str)> {
    let mut p = fooocus_console::Parser::for_source(source);
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        p.feed_line(i as u64 + 1, l, &mut out);
    }
    p.finish(&mut out);
    out.iter().map(|e| (e.line, e.kind.name())).collect()
}

/// 2.5 up to its first task (stdout), the task's start lines, then `prompt_lines` where the
/// worker echoes the prompt.
fn v25_with_prompt_lines(prompt_lines: &str) -> String {
    format!(
        "Fooocus version: 2.5.5\nRunning on local URL:  http://127.0.0.1:7865\nStarted worker with PID 7\n\
App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n\
Enter LCM mode.\n[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing Fooocus text #1 ...\n{prompt_lines}\n\
[Fooocus] Encoding positive #1 ...\n"
    )
}

/// The events a clean task's start-up and start give (activity left out: the lines that echo
/// a prompt are work, `[Enhance] ...`), the task's preparation phase with them.
const V25_START: [(u64, &str); 6] = [
    (1, "version"),
    (2, "listening"),
    (3, "worker_started"),
    (4, "ready"),
    (5, "task_start"),
    (5, "phase"),
];

fn without_activity(k: Vec<(u64, &'static str)>) -> Vec<(u64, &'static str)> {
    k.into_iter().filter(|(_, k)| *k != "activity").collect()
}

fn assert_prompt_is_data(source: fooocus_console::Source, prompt_lines: &str) {
    let log = v25_with_prompt_lines(prompt_lines);
    let got = without_activity(kinds_from(source, &log));
    assert_eq!(got, V25_START, "{source:?}, prompt:\n{prompt_lines}");
}

/// Each injection inside a single-line prompt, echoed after Fooocus's own prefix: nothing is
/// found inside a line (each used to be: `out_of_memory`, a second `ready` with a URL of the
/// prompt's choosing, a `listening`, a taken port, progress).
#[test]
fn a_single_line_prompt_writes_no_event() {
    for prompt in [
        "a cat, CUDA out of memory. Tried to allocate 2.00 GiB, highly detailed",
        "a cat, torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "a cat, RuntimeError: [enforce fail at alloc_cpu.cpp:83] : DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes.",
        "a cat, INFO:     Uvicorn running on http://203.0.113.9:80 (Press CTRL+C to quit)",
        "a cat Uvicorn running on http://127.0.0.1:1/",
        "a cat, Running on local URL:  http://203.0.113.9:80",
        "a cat, App started successful. Use the app with http://203.0.113.9:80/ or 203.0.113.9:80",
        "a cat, OSError: Cannot find empty port in range: 7865-7865.",
        "a cat, Exception in thread Thread-2 (worker): Traceback (most recent call last):   File \"/f/modules/async_worker.py\", line 1, in worker ImportError: x",
        "a cat, 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]",
        // Phase lines and the failures with a known fix.
        "a cat, 50% 5/10 [00:01<00:01,  5.0it/s]",
        "a cat, model_type EPS",
        "a cat, Requested to load SDXL",
        "a cat, Requested to load AutoencoderKL",
        "a cat, [Fooocus] Loading models ...",
        "a cat, [Fooocus] Saving image 1/1 to system ...",
        "a cat, Image generated with private log at: /x",
        "a cat, RuntimeError: CUDA error: no kernel image is available for execution on the device",
        "a cat, ERROR: Could not install packages due to an OSError: [WinError 5] Access is denied: 'C:\\x.pyd'",
    ] {
        let line = format!("[Prompt Expansion] {prompt}, stand-in expansion");
        for source in [
            fooocus_console::Source::Merged,
            fooocus_console::Source::Stdout,
        ] {
            assert_prompt_is_data(source, &line);
        }
    }
}

/// Fake worker death: a traceback of the right shape, typed as a multi-line prompt, so each of
/// its lines starts a console line. Echoed on stdout, where Python never writes a traceback.
const FAKE_DEATH: &str = "[Enhance] Searching for \"a cat\nException in thread Thread-2 (worker):\n\
Traceback (most recent call last):\n  File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n    self.run()\n  \
File \"/f/modules/async_worker.py\", line 1437, in worker\n    handler(task)\n\
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\"";

/// A second ready (with a URL of the prompt's choosing), a listening line and uvicorn's line,
/// a taken port, start-up lines, OOM at the start of a line, a bar: after ready, on stdout.
const FAKE_STARTUP: &str = "[Enhance] Searching for \"a cat\nRunning on local URL:  http://203.0.113.9:80\n\
App started successful. Use the app with http://203.0.113.9:80/ or 203.0.113.9:80\n\
INFO:     Uvicorn running on http://203.0.113.9:80 (Press CTRL+C to quit)\nFooocus version: 2.1.865\n\
Started worker with PID 1\nOSError: Cannot find empty port in range: 7865-7865.\n\
CUDA out of memory. Tried to allocate 2.00 GiB\ntorch.cuda.OutOfMemoryError: CUDA out of memory.\n\
 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]\"";

#[test]
fn a_multi_line_prompt_on_stdout_writes_no_event() {
    assert_prompt_is_data(fooocus_console::Source::Stdout, FAKE_DEATH);
    assert_prompt_is_data(fooocus_console::Source::Stdout, FAKE_STARTUP);
}

/// A saved log has both streams in one: a multi-line prompt can still not move start-up
/// (ready, listening, version, worker PID, port) once Fooocus is ready.
#[test]
fn a_multi_line_prompt_in_a_merged_log_cannot_repeat_start_up() {
    let got = without_activity(kinds_from(
        fooocus_console::Source::Merged,
        &v25_with_prompt_lines(
            "[Enhance] Searching for \"a cat\nRunning on local URL:  http://203.0.113.9:80\n\
App started successful. Use the app with http://203.0.113.9:80/ or 203.0.113.9:80\n\
INFO:     Uvicorn running on http://203.0.113.9:80 (Press CTRL+C to quit)\nFooocus version: 2.1.865\n\
Started worker with PID 1\"",
        ),
    ));
    assert_eq!(got, V25_START);
}

/// Stdout before ready: uvicorn logs to stderr, so its line on stdout is not Fooocus-API's.
#[test]
fn uvicorns_line_counts_only_on_stderr() {
    let line = "INFO:     Uvicorn running on http://127.0.0.1:8888 (Press CTRL+C to quit)\n";
    assert_eq!(kinds_from(fooocus_console::Source::Stdout, line), vec![]);
    assert_eq!(
        kinds_from(fooocus_console::Source::Stderr, line),
        vec![(1, "listening"), (1, "ready")]
    );
}

/// In a merged log the stream is unknown: a traceback counts only in Python's own shape.
/// Frames are `  File "PATH", line N, in NAME` (two spaces); a source line that ends in `, in
/// worker`, or a frame indented otherwise, does not put the worker in it.
#[test]
fn only_a_traceback_in_pythons_shape_kills_the_worker() {
    let real = "Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n  \
File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n    self.run()\n  \
File \"/f/modules/async_worker.py\", line 390, in worker\n    handler(task)\nRuntimeError: boom\n";
    assert_eq!(
        kinds_from(fooocus_console::Source::Merged, real),
        vec![(1, "worker_died"), (2, "error")]
    );
    assert_eq!(
        kinds_from(fooocus_console::Source::Stderr, real),
        vec![(1, "worker_died"), (2, "error")]
    );
    for fake in [
        // The worker's name in a source line, not a frame.
        "Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n  \
File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n    x = 1, in worker\nRuntimeError: boom\n",
        // Frames indented by three spaces.
        "Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n   \
File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n   File \"/f/async_worker.py\", line 390, in worker\nRuntimeError: boom\n",
        // A frame without its line number.
        "Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n  \
File \"/f/async_worker.py\", line x, in worker\n  File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\nRuntimeError: boom\n",
    ] {
        let got = kinds_from(fooocus_console::Source::Merged, fake);
        assert!(!got.iter().any(|(_, k)| *k == "worker_died"), "{got:?}\n{fake}");
    }
    // On stdout (a prompt's lines) even the right shape is no traceback at all.
    assert_eq!(kinds_from(fooocus_console::Source::Stdout, real), vec![]);
}

/// Only the exception line says out of memory; a frame or source line with the words does not.
#[test]
fn oom_comes_from_the_exception_line_only() {
    let log = "Traceback (most recent call last):\n  File \"/f/x.py\", line 3, in f\n    raise ValueError(\"CUDA out of memory\")\n\
ValueError: bad size\nnext\n";
    assert_eq!(
        kinds_from(fooocus_console::Source::Stderr, log),
        vec![(1, "error")]
    );
}

/// Fooocus-API 0.4 logs `logging.exception` through its logger on stdout: the traceback right
/// under an ERROR record is real there; the same lines without the record are not.
#[test]
fn a_traceback_on_stdout_only_under_an_error_record() {
    let tb = "Traceback (most recent call last):\n  File \"/a/fooocusapi/worker.py\", line 990, in process_generate\n\
torch.cuda.OutOfMemoryError: CUDA out of memory.\nnext\n";
    let logged = format!("[2024-05-18 15:07:04] ERROR    CUDA out of memory.\n{tb}");
    assert_eq!(
        kinds_from(fooocus_console::Source::Stdout, &logged),
        vec![(1, "oom"), (2, "error"), (2, "oom")]
    );
    assert_eq!(kinds_from(fooocus_console::Source::Stdout, tb), vec![]);
    let info = format!("[2024-05-18 15:07:04] INFO     a prompt\n{tb}");
    assert_eq!(kinds_from(fooocus_console::Source::Stdout, &info), vec![]);
}

/// 2.5's enhance phase comes after the task's images: its start, image and per-image lines
/// cannot come again (a new task start there would reset the generation's timeout).
#[test]
fn the_enhance_phase_cannot_start_a_task_or_an_image() {
    let log = "[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/1 ...\n\
Generating and saving time: 3.00 seconds\n[Fooocus] Processing enhance ...\n[Fooocus] Preparing enhancement 1/1 ...\n\
[Enhance] Searching for \"a cat\nEnter LCM mode.\n[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/9 ...\n\
Generating and saving time: 1.00 seconds\n[Task Queue] Start task, job_id=9\"\nTotal time: 6.10 seconds\n";
    assert_eq!(
        kinds_no_activity(log),
        vec![
            (1, "task_start"),
            (2, "image_start"),
            (3, "image_done"),
            (12, "task_end")
        ]
    );
}

/// A taken port is Gradio's launch() failing: a traceback's `OSError` line during start-up.
#[test]
fn a_taken_port_only_from_gradios_traceback_at_start_up() {
    let port_tb =
        "Traceback (most recent call last):\n  File \"/f/webui.py\", line 1, in <module>\n\
OSError: Cannot find empty port in range: 7865-7865. You can specify a different port.\n";
    assert_eq!(
        kinds_from(fooocus_console::Source::Stderr, port_tb),
        vec![(1, "error"), (1, "port_taken")]
    );
    let after_ready = format!("App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n{port_tb}");
    assert_eq!(
        kinds_from(fooocus_console::Source::Merged, &after_ready),
        vec![(1, "ready"), (2, "error")]
    );
    assert_eq!(
        kinds_from(
            fooocus_console::Source::Merged,
            "Cannot find empty port in range: 7865-7865\n"
        ),
        vec![]
    );
}

/// A saved log says its version: from 2.0.90 on (MRE excepted) each task runs inside `try`, so
/// the worker can die only before ready, and a death-shaped traceback after it is not one.
#[test]
fn a_worker_death_after_ready_only_where_a_task_error_kills_it() {
    let death = "Exception in thread Thread-2 (worker):\nTraceback (most recent call last):\n  \
File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n    self.run()\n  \
File \"/f/modules/async_worker.py\", line 390, in worker\n    handler(task)\nRuntimeError: boom\n";
    for (version, dies) in [
        ("2.5.5", false),
        ("2.6.5 (mashb1t)", false),
        ("2.0.90", false),
        ("2.0.78", true),
        ("2.0.78.5 MRE", true),
    ] {
        let log = format!(
            "Fooocus version: {version}\nApp started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n{death}"
        );
        let got = kinds_from(fooocus_console::Source::Merged, &log);
        assert_eq!(
            got.contains(&(3, "worker_died")),
            dies,
            "{version}: {got:?}"
        );
        // Before ready, any version's worker can fail to start.
        let early = format!("Fooocus version: {version}\n{death}");
        assert!(kinds_from(fooocus_console::Source::Merged, &early).contains(&(2, "worker_died")));
    }
}

/// Lines of every kind the rules look at (start-up, a logger ERROR record, tracebacks, bars,
/// enhance), in any order and cut anywhere, on every stream: the events never depend on where
/// the chunks were cut, and nothing panics.
const VOCABULARY: [&str; 14] = [
    "Fooocus version: 2.5.5\n",
    "Running on local URL:  http://127.0.0.1:7865\n",
    "App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n",
    "INFO:     Uvicorn running on http://127.0.0.1:8888 (Press CTRL+C to quit)\n",
    "[2024-05-18 15:07:04] ERROR    CUDA out of memory.\n",
    "Exception in thread Thread-2 (worker):\n",
    "Traceback (most recent call last):\n",
    "  File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n",
    "  File \"/f/modules/async_worker.py\", line 390, in worker\n",
    "torch.cuda.OutOfMemoryError: CUDA out of memory.\n",
    "[Parameters] Adaptive CFG = 7\n",
    " 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]\r",
    "[Fooocus] Processing enhance ...\n",
    "Total time: 6.10 seconds\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_stream_reads_the_same_whatever_the_chunks(
        picks in proptest::collection::vec(0usize..VOCABULARY.len(), 1..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let text: String = picks.iter().map(|&i| VOCABULARY[i]).collect();
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
        cuts.sort();
        for source in [
            fooocus_console::Source::Merged,
            fooocus_console::Source::Stdout,
            fooocus_console::Source::Stderr,
        ] {
            let run = |chunks: &[&[u8]]| {
                let mut p = ConsoleParser::for_source(source);
                let mut out = Vec::new();
                for c in chunks {
                    p.feed(c, &mut out);
                }
                p.finish(&mut out);
                out
            };
            let mut chunks = Vec::new();
            let mut last = 0;
            for &c in &cuts {
                chunks.push(&bytes[last..c]);
                last = c;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(run(&chunks), run(&[bytes]));
        }
    }
}

/// A saved log of a restart holds two launches: each one's start-up is read (before, the
/// second launch's version, listening URL and ready were taken for a prompt's and dropped).
/// launch.py prints `[System ARGV] [...]` first (2.1.865+, mashb1t, Fooocus-API), or
/// `Python 3...` first (2.0.x, 2.1.679, MRE).
#[test]
fn each_launch_in_a_saved_log_starts_afresh() {
    let v25 = |port: u16| {
        format!(
            "[System ARGV] ['entry_with_update.py', '--port', '{port}']\n\
Python 3.10.12 (main, Nov 20 2023, 15:14:05) [GCC 11.4.0]\nFooocus version: 2.5.5\n\
Running on local URL:  http://127.0.0.1:{port}\nStarted worker with PID 7\n\
App started successful. Use the app with http://127.0.0.1:{port}/ or 127.0.0.1:{port}\n"
        )
    };
    // The first launch is killed in a task (no task end), then restarted.
    let log = format!(
        "{}[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/2 ...\n{}[Parameters] Adaptive CFG = 7\nTotal time: 1.00 seconds\n",
        v25(7865),
        v25(7866)
    );
    let got = without_activity(kinds(&log));
    assert_eq!(
        got,
        vec![
            (3, "version"),
            (4, "listening"),
            (5, "worker_started"),
            (6, "ready"),
            (7, "task_start"),
            (8, "image_start"),
            (11, "version"),
            (12, "listening"),
            (13, "worker_started"),
            (14, "ready"),
            (15, "task_start"),
            (16, "task_end"),
        ]
    );
    let ready: Vec<String> = events(&log)
        .into_iter()
        .filter(|e| e.1.contains("\"ready\""))
        .map(|e| e.1)
        .collect();
    assert!(ready[1].contains(":7866"), "{ready:?}");
    // 2.0.78: `Python ...` is the launch's first line.
    let v20 =
        "Python 3.10.9 (tags/v3.10.9:1dd9be6, Dec  6 2022, 20:01:21) [MSC v.1934 64 bit (AMD64)]\n\
Fooocus version: 2.0.78\nRunning on local URL:  http://127.0.0.1:7860\n";
    let got = kinds(&format!("{v20}[Fooocus] Initializing ...\n{v20}"));
    assert_eq!(
        got,
        vec![
            (2, "version"),
            (3, "listening"),
            (4, "task_start"),
            (6, "version"),
            (7, "listening")
        ]
    );
}

/// The live guard reads each process's streams with parsers of their own: a prompt echoed on
/// stdout that writes a launch's first line starts nothing there.
#[test]
fn a_prompts_launch_line_on_stdout_starts_nothing() {
    for launch in [
        "[System ARGV] ['launch.py']",
        "Python 3.10.12 (main, Nov 20 2023, 15:14:05) [GCC 11.4.0]",
    ] {
        assert_prompt_is_data(
            fooocus_console::Source::Stdout,
            &format!("[Enhance] Searching for \"a cat\n{launch}\n{FAKE_STARTUP}"),
        );
    }
    // Neither is a launch line unless in its own shape, at the start of the line.
    for not_launch in [
        "    Python  3.10.11 (you have 3.10.12)",
        "Python 3.10 is required",
        "[System ARGV] x",
    ] {
        let log = format!(
            "{}{not_launch}\nFooocus version: 2.1.865\n",
            v25_with_prompt_lines("")
        );
        assert_eq!(
            without_activity(kinds_from(fooocus_console::Source::Merged, &log)),
            V25_START,
            "{not_launch}"
        );
    }
}

/// The start-up race of every version (`async_worker.py`'s ready `try`): the worker finished
/// loading before `launch()` set the app's URL and printed the AttributeError it caught instead
/// of its ready line. Fooocus comes up all the same: ready comes with Gradio's listening line,
/// whichever of the two is printed first. Real 2.5.5 did this under tests/real's scenario R.
#[test]
fn a_ready_line_lost_to_the_start_up_race_still_makes_ready() {
    use fooocus_console::Source::{Stderr, Stdout};
    let head = "Fooocus version: 2.5.5\nStarted worker with PID 1234\n";
    // The worker first (the race as it happens): ready at the listening line.
    let lost_first =
        format!("{head}'NoneType' object has no attribute 'local_url'\nRunning on local URL:  http://127.0.0.1:7865\n");
    assert_eq!(
        kinds_from(Stdout, &lost_first),
        vec![
            (1, "version"),
            (2, "worker_started"),
            (4, "listening"),
            (4, "ready")
        ]
    );
    let ev = events(&lost_first);
    assert_eq!(
        ev.last().unwrap().1,
        r#"{"kind":"ready","url":"http://127.0.0.1:7865"}"#
    );
    // Gradio first, the app built but not launched: ready at the lost line.
    let listening_first = "Running on local URL:  http://127.0.0.1:7865\nStarted worker with PID 1\n'Blocks' object has no attribute 'server_name'\n";
    assert_eq!(
        kinds_from(Stdout, listening_first),
        vec![(1, "listening"), (2, "worker_started"), (3, "ready")]
    );
    // The URL not set yet but the attribute there: `Use the app with None`.
    let none = "Started worker with PID 1\nApp started successful. Use the app with None or None:None\nRunning on local URL:  http://127.0.0.1:7865\n";
    assert_eq!(
        kinds_from(Stdout, none),
        vec![(1, "worker_started"), (3, "listening"), (3, "ready")]
    );
    // Not Fooocus's print: on stderr, or after ready (a prompt can say it), it is nothing.
    assert_eq!(
        kinds_from(Stderr, &lost_first),
        vec![(1, "version"), (2, "worker_started"), (4, "listening")]
    );
    let after_ready = format!("{V25}'NoneType' object has no attribute 'local_url'\n");
    assert_eq!(
        kinds(&after_ready)
            .iter()
            .filter(|k| k.1 == "ready")
            .count(),
        1
    );
    // Another object's or another attribute's error is not the ready line's.
    for other in [
        "'NoneType' object has no attribute 'shape'",
        "'Blocks' object has no attribute 'local_url' (and more)",
        "'Tensor' object has no attribute 'local_url'",
    ] {
        let text = format!("Running on local URL:  http://127.0.0.1:7865\n{other}\n");
        assert_eq!(kinds_from(Stdout, &text), vec![(1, "listening")], "{other}");
    }
}
