//! The phases of Fooocus's work and the failures with a known fix, read from lines in each
//! version's own format (the sources named at each test, in `../shared/upstream`).

use fooocus_console::{parse_log, EventKind, KnownFailure, Parser, Phase, Source};

/// The phase events of a saved log, as (line, phase).
fn phases(text: &str) -> Vec<(u64, &'static str)> {
    let mut out = Vec::new();
    parse_log(text.as_bytes(), |e| {
        if let EventKind::Phase { phase } = e.kind {
            out.push((e.line, phase.as_str()))
        }
    })
    .unwrap();
    out
}

/// Every event of `text` fed line by line to a parser of one stream.
fn events_from(source: Source, text: &str) -> Vec<(u64, EventKind)> {
    let mut p = Parser::for_source(source);
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        p.feed_line(i as u64 + 1, l, &mut out);
    }
    p.finish(&mut out);
    out.into_iter().map(|e| (e.line, e.kind)).collect()
}

fn phases_from(source: Source, text: &str) -> Vec<(u64, &'static str)> {
    events_from(source, text)
        .into_iter()
        .filter_map(|(l, k)| match k {
            EventKind::Phase { phase } => Some((l, phase.as_str())),
            _ => None,
        })
        .collect()
}

fn failures(source: Source, text: &str) -> Vec<(u64, KnownFailure)> {
    events_from(source, text)
        .into_iter()
        .filter_map(|(l, k)| match k {
            EventKind::KnownFailure { failure } => Some((l, failure)),
            _ => None,
        })
        .collect()
}

/// 2.5.5 on CPU, start-up then one image: `ldm_patched/modules/model_base.py:59` (`model_type`),
/// `model_management.py:396,406`, `modules/default_pipeline.py:75`, `async_worker.py:205,209,
/// 654,668,737,745,753,1156,1282,320`, `private_logger.py:133`, `webui.py:92`.
const V255: &str = "[System ARGV] ['launch.py', '--always-cpu']\n\
Python 3.10.12 (main, Nov 20 2023, 15:14:05) [GCC 11.4.0]\n\
Fooocus version: 2.5.5\n\
Total VRAM 15916 MB, total RAM 15916 MB\n\
Set vram state to: DISABLED\n\
Running on local URL:  http://127.0.0.1:7865\n\
model_type EPS\n\
UNet ADM Dimension 2816\n\
Base model loaded: /m/checkpoints/vega.safetensors\n\
Requested to load SDXLClipModel\n\
Loading 1 new model\n\
Started worker with PID 77\n\
App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n\
[Parameters] Adaptive CFG = 7\n\
[Parameters] Sampler = dpmpp_2m_sde_gpu - karras\n\
[Fooocus] Initializing ...\n\
[Fooocus] Loading models ...\n\
Refiner unloaded.\n\
[Fooocus] Processing prompts ...\n\
[Fooocus] Preparing Fooocus text #1 ...\n\
Requested to load GPT2LMHeadModel\n\
Loading 1 new model\n\
[Prompt Expansion] a cat, highly detailed\n\
[Fooocus] Encoding positive #1 ...\n\
[Fooocus] Encoding negative #1 ...\n\
Preparation time: 30.00 seconds\n\
Using karras scheduler.\n\
[Fooocus] Preparing task 1/1 ...\n\
[Sampler] refiner_swap_method = joint\n\
Requested to load SDXL\n\
Loading 1 new model\n\
[Fooocus Model Management] Moving model(s) has taken 1.20 seconds\n\
  0%|          | 0/3 [00:00<?, ?it/s]\r 33%|███▎      | 1/3 [00:02<00:04,  2.0s/it]\r 67%|██████▋   | 2/3 [00:04<00:02,  2.0s/it]\n\
 67%|██████▋   | 2/3 [00:04<00:02,  2.0s/it]\r100%|██████████| 3/3 [00:06<00:00,  2.0s/it]\r100%|██████████| 3/3 [00:06<00:00,  2.0s/it]\n\
Requested to load AutoencoderKL\n\
Loading 1 new model\n\
[Fooocus] Saving image 1/1 to system ...\n\
Image generated with private log at: /o/2026-12-07/log.html\n\
Generating and saving time: 40.00 seconds\n\
[Enhance] Skipping, preconditions aren't met\n\
Processing time (total): 40.00 seconds\n\
Total time: 70.00 seconds\n\
[Parameters] Adaptive CFG = 7\n\
[Fooocus] Initializing ...\n\
[Fooocus] Loading models ...\n\
[Fooocus] Processing prompts ...\n";

/// Each phase once, on entry, at the line that starts it: the start-up load, then the task's
/// preparation (with the loads it does on the way), sampling, the VAE decode and saving; a
/// redrawn bar or a second line of the same phase tells nothing new, and the next task
/// starts its phases afresh.
#[test]
fn a_25_generation_goes_through_its_phases_once_each() {
    assert_eq!(
        phases(V255),
        vec![
            (7, "model_load"),
            (14, "preparation"),
            (17, "model_load"),
            (19, "preparation"),
            (21, "model_load"),
            (24, "preparation"),
            (30, "model_load"),
            (33, "sampling"),
            (34, "decode"),
            (37, "saving"),
            (43, "preparation"),
            (45, "model_load"),
            (46, "preparation"),
        ]
    );
    // The same read live, each stream apart: prints on stdout, bars on stderr.
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for l in V255.lines() {
        let to = if l.contains("%|") {
            &mut stderr
        } else {
            &mut stdout
        };
        to.push_str(l);
        to.push('\n');
    }
    let out: Vec<_> = phases_from(Source::Stdout, &stdout)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        out,
        [
            "model_load",
            "preparation",
            "model_load",
            "preparation",
            "model_load",
            "preparation",
            "model_load",
            // The VAE loaded for the decode (this stream never sees the bars).
            "decode",
            "saving",
            "preparation",
            "model_load",
            "preparation"
        ]
    );
    let err = phases_from(Source::Stderr, &stderr);
    assert_eq!(err, vec![(1, "sampling"), (2, "decode")]);
}

/// 2.1.865 (`modules/async_worker.py:44,427,436,446`, `private_logger.py`): no `Saving image`
/// line before 2.4, so saving shows at the log line written once the image is; two images,
/// each sampled then decoded.
#[test]
fn a_21_task_samples_and_decodes_each_image() {
    let log = "[Fooocus] Initializing ...\n[Fooocus] Loading models ...\n[Fooocus] Processing prompts ...\n\
[Fooocus] Encoding positive #1 ...\n[Fooocus] Encoding positive #2 ...\n[Fooocus] Encoding negative #1 ...\n\
Preparation time: 3.10 seconds\nRequested to load SDXL\nLoading 1 new model\n\
  0%|          | 0/2 [00:00<?, ?it/s]\r 50%|█████     | 1/2 [00:01<00:01,  1.0s/it]\r100%|██████████| 2/2 [00:02<00:00,  1.0s/it]\n\
Requested to load AutoencoderKL\nLoading 1 new model\nImage generated with private log at: /o/log.html\n\
Generating and saving time: 5.00 seconds\n\
  0%|          | 0/2 [00:00<?, ?it/s]\r100%|██████████| 2/2 [00:02<00:00,  1.0s/it]\n\
Image generated with private log at: /o/log.html\nGenerating and saving time: 3.00 seconds\nTotal time: 12.00 seconds\n";
    assert_eq!(
        phases(log),
        vec![
            (1, "preparation"),
            (2, "model_load"),
            (3, "preparation"),
            (8, "model_load"),
            (10, "sampling"),
            (10, "decode"),
            (13, "saving"),
            (15, "sampling"),
            (15, "decode"),
            (16, "saving"),
        ]
    );
}

/// A stop at a step: the bar ends short of its total (no decode), then the task ends; a 2.0
/// task (`Encoding base positive`, `Diffusion time`) and a VAE encode before sampling (2.5
/// img2img: `Requested to load AutoencoderKL` while preparing is a model load, not a decode).
#[test]
fn a_stopped_bar_decodes_nothing_and_an_encode_is_not_a_decode() {
    let stopped = "[Fooocus] Initializing ...\n[Fooocus] Encoding base positive #1 ...\n\
  0%|          | 0/30 [00:00<?, ?it/s]\r  7%|▋         | 2/30 [00:02<00:28,  1.0s/it]\nUser stopped\nTotal time: 5.00 seconds\n";
    assert_eq!(phases(stopped), vec![(1, "preparation"), (3, "sampling")]);
    let encode = "[Parameters] Adaptive CFG = 7\n[Fooocus] VAE encoding ...\nRequested to load AutoencoderKL\n\
Loading 1 new model\n[Fooocus] Preparing task 1/1 ...\n  0%|          | 0/3 [00:00<?, ?it/s]\n";
    assert_eq!(
        phases(encode),
        vec![
            (1, "preparation"),
            (3, "model_load"),
            (5, "preparation"),
            (6, "sampling")
        ]
    );
}

/// Fooocus-API 0.3.33 (`fooocusapi/worker.py:124,130`: plain prints) and 0.4.1.1 (its logger's
/// prefix): the task's phases, and `[Task Queue] Finish task` ends the task and its phases.
#[test]
fn fooocus_api_phases_end_with_the_task() {
    let log = "[Task Queue] Task queue start task, job_id=abc\n[Fooocus] Initializing ...\n\
[Fooocus] Loading models ...\n[Fooocus] Processing prompts ...\n  0%|          | 0/2 [00:00<?, ?it/s]\r100%|██████████| 2/2 [00:02<00:00,  1.0s/it]\n\
Generating and saving time: 3.00 seconds\n[Task Queue] Finish task, job_id=abc\n\
[2024-05-18 15:07:01] INFO     [Task Queue] Task queue start task, job_id=d\n\
[2024-05-18 15:07:01] INFO     [Fooocus] Loading models ...\n";
    assert_eq!(
        phases(log),
        vec![
            (1, "preparation"),
            (3, "model_load"),
            (4, "preparation"),
            (5, "sampling"),
            (5, "decode"),
            (8, "preparation"),
            (9, "model_load"),
        ]
    );
    let ends: Vec<_> = events_from(Source::Merged, log)
        .into_iter()
        .filter(|(_, k)| matches!(k, EventKind::TaskEnd { .. }))
        .map(|(l, _)| l)
        .collect();
    assert_eq!(ends, vec![7]);
}

/// 2.5 Enhance (`async_worker.py:1316,1361,1368`): the detection prompt is echoed verbatim, new
/// lines included, so every stdout line after `[Enhance] Searching for` may be the user's; none
/// moves the phase. The sampler's bars (stderr) still do.
#[test]
fn an_enhance_prompt_never_forges_a_phase() {
    let forged = "model_type EPS\nRequested to load SDXL\nLoading 1 new model\n\
[Fooocus] Loading models ...\n[Fooocus] Processing prompts ...\n[Fooocus] Saving image 1/1 to system ...\n\
[Fooocus] Preparing task 1/9 ...\nImage generated with private log at: /x\nRequested to load AutoencoderKL";
    let stdout = format!(
        "[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/1 ...\nGenerating and saving time: 3.00 seconds\n\
[Fooocus] Processing enhance ...\n[Fooocus] Preparing enhancement 1/1 ...\n[Enhance] Searching for \"a cat\n{forged}\"\n\
[Enhance] 1 boxes detected\n"
    );
    assert_eq!(
        phases_from(Source::Stdout, &stdout),
        vec![(1, "preparation"), (4, "preparation")],
        "a line of the prompt moved the phase"
    );
    // A saved log: the same, with the real bars of the enhancement before the prompt's lines.
    let merged = format!(
        "[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/1 ...\nGenerating and saving time: 3.00 seconds\n\
[Fooocus] Processing enhance ...\n  0%|          | 0/2 [00:00<?, ?it/s]\r100%|██████████| 2/2 [00:02<00:00,  1.0s/it]\n\
[Fooocus] Preparing enhancement 1/1 ...\n[Enhance] Searching for \"a cat\n{forged}\"\n"
    );
    assert_eq!(
        phases(&merged),
        vec![
            (1, "preparation"),
            (4, "preparation"),
            (5, "sampling"),
            (5, "decode")
        ]
    );
}

/// Emit on change only: a bar redrawn (tqdm's `\r` redraws, its final bar drawn again at
/// close) tells its phase once.
#[test]
fn a_redrawn_bar_tells_its_phase_once() {
    let log = "[Fooocus] Initializing ...\n  0%|          | 0/2 [00:00<?, ?it/s]\r  0%|          | 0/2 [00:01<?, ?it/s]\r\
 50%|█████     | 1/2 [00:02<00:02,  1.0s/it]\n 50%|█████     | 1/2 [00:02<00:02,  1.0s/it]\r\
100%|██████████| 2/2 [00:03<00:00,  1.0s/it]\n100%|██████████| 2/2 [00:03<00:00,  1.0s/it]\n";
    assert_eq!(
        phases(log),
        vec![(1, "preparation"), (2, "sampling"), (3, "decode")]
    );
}

/// tqdm without its bar (`{l_bar[:-1]}{r_bar[1:]}`: a console it cannot measure, such as
/// Colab or `docker logs`): a step is progress like a bar's, and enters sampling.
#[test]
fn a_step_line_without_a_bar_is_progress() {
    let log = "[Fooocus] Initializing ...\n  0% 0/30 [00:01<?, ?it/s]\r  3% 1/30 [00:02<00:58,  2.00s/it]\n\
Fetching 3 files: 100% 3/3 [00:00<00:00, 3.10it/s]\n100% 6.46G/6.46G [01:02<00:00, 111MB/s]\n";
    let got: Vec<_> = events_from(Source::Stderr, log)
        .into_iter()
        .filter(|(_, k)| !matches!(k, EventKind::TaskStart))
        .collect();
    let progress = |step| EventKind::Progress { step, total: 30 };
    assert_eq!(
        got,
        vec![
            (
                1,
                EventKind::Phase {
                    phase: Phase::Preparation
                }
            ),
            (
                2,
                EventKind::Phase {
                    phase: Phase::Sampling
                }
            ),
            // 2.0-2.3: an image starts with its first step.
            (2, EventKind::ImageStart { index: 1, total: 1 }),
            (2, progress(0)),
            (2, progress(1)),
            (
                3,
                EventKind::Activity {
                    what: "download".into()
                }
            ),
            (
                4,
                EventKind::Activity {
                    what: "download".into()
                }
            ),
        ]
    );
    // Not text that merely has the numbers, nor any such line on stdout.
    for not_a_step in [
        "a cat 50% 1/2 done",
        "50% 1/2 [of the cats]",
        "100% 2/2 [00:01<00:00]",
    ] {
        let got = events_from(
            Source::Stderr,
            &format!("[Fooocus] Initializing ...\n{not_a_step}\n"),
        );
        assert!(
            !got.iter()
                .any(|(_, k)| matches!(k, EventKind::Progress { .. })),
            "{not_a_step}: {got:?}"
        );
    }
    let got = events_from(
        Source::Stdout,
        "[Fooocus] Initializing ...\n  0% 0/30 [00:01<?, ?it/s]\n",
    );
    assert!(!got
        .iter()
        .any(|(_, k)| matches!(k, EventKind::Progress { .. })));
}

/// torch's `RuntimeError: CUDA error: no kernel image is available for execution on the
/// device` (an RTX 50-series card with 2.5's torch 2.1, lllyasviel/Fooocus#3862): after the
/// error of the traceback Fooocus prints (`async_worker.py`: `traceback.print_exc()`, stderr),
/// or on a line of its own (Fooocus-API's logged error), never from a prompt.
#[test]
fn a_gpu_newer_than_torch_is_known() {
    let tb = "[Fooocus] Encoding positive #1 ...\nTraceback (most recent call last):\n  \
File \"/f/modules/async_worker.py\", line 1471, in worker\n    handler(task)\n\
RuntimeError: CUDA error: no kernel image is available for execution on the device\n\
CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.\n\
For debugging consider passing CUDA_LAUNCH_BLOCKING=1.\nTotal time: 3.00 seconds\n";
    for source in [Source::Merged, Source::Stderr] {
        let ev = events_from(source, tb);
        let at = ev
            .iter()
            .position(|(_, k)| matches!(k, EventKind::Error { .. }))
            .expect("error");
        assert_eq!(
            ev[at + 1],
            (
                2,
                EventKind::KnownFailure {
                    failure: KnownFailure::GpuTooNew
                }
            ),
            "{source:?}"
        );
    }
    let logged = "[2024-05-18 15:07:04] ERROR    CUDA error: no kernel image is available for execution on the device\n";
    assert_eq!(
        failures(Source::Stdout, logged),
        vec![(1, KnownFailure::GpuTooNew)]
    );
    // On stdout without an ERROR record it is a prompt's line; inside a line, any text.
    for fake in [
        "CUDA error: no kernel image is available for execution on the device\n",
        "[Prompt Expansion] a cat, RuntimeError: CUDA error: no kernel image is available\n",
    ] {
        assert_eq!(failures(Source::Stdout, fake), vec![], "{fake}");
    }
    assert_eq!(
        failures(
            Source::Merged,
            "[Prompt Expansion] a cat, RuntimeError: CUDA error: no kernel image is available\n"
        ),
        vec![]
    );
    // Another CUDA error is not this one.
    assert_eq!(
        failures(
            Source::Stderr,
            "RuntimeError: CUDA error: an illegal memory access was encountered\n"
        ),
        vec![]
    );
}

/// An update that cannot replace a module another Python holds open (#3295, #3305): pip's
/// error live on stderr, or inside `launch_util.run_pip`'s error text on stdout (2.5.5
/// `modules/launch_util.py:58-75`: `stderr: ...`), before Fooocus is ready.
#[test]
fn an_update_blocked_by_a_held_module_is_known() {
    let live = "[System ARGV] ['entry_with_update.py']\nInstalling requirements\n\
ERROR: Could not install packages due to an OSError: [WinError 5] Access is denied: 'C:\\\\F\\\\python_embeded\\\\lib\\\\site-packages\\\\_cffi_backend.cp310-win_amd64.pyd'\n\
Consider using the `--user` option or check the permissions.\n";
    assert_eq!(
        failures(Source::Stderr, live),
        vec![(3, KnownFailure::FileLocked)]
    );
    let printed = "Couldn't install requirements.\nCommand: \"python\" -m pip install -r \"requirements_versions.txt\" --prefer-binary\n\
Error code: 1\nstdout: Collecting x\n\
stderr: ERROR: Could not install packages due to an OSError: [WinError 5] Access is denied: 'i:\\\\f\\\\python_embeded\\\\lib\\\\site-packages\\\\_cffi_backend.cp310-win_amd64.pyd'\n\
Consider using the `--user` option or check the permissions.\n\nCMD Failed requirements: install -r \"requirements_versions.txt\"\n";
    assert_eq!(
        failures(Source::Stdout, printed),
        vec![(5, KnownFailure::FileLocked)]
    );
    // Not another file, not another error, and not once Fooocus is ready (a prompt's line).
    for not_locked in [
        "ERROR: Could not install packages due to an OSError: [WinError 5] Access is denied: 'C:\\\\f\\\\notes.txt'\n",
        "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device: 'C:\\\\f\\\\x.pyd'\n",
        "App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n\
ERROR: Could not install packages due to an OSError: [WinError 5] Access is denied: 'C:\\\\f\\\\x.pyd'\n",
    ] {
        assert_eq!(failures(Source::Merged, not_locked), vec![], "{not_locked}");
    }
}

/// The advice names the fix in plain words.
#[test]
fn each_known_failure_says_its_fix() {
    let gpu = KnownFailure::GpuTooNew.advice();
    for fact in ["torch 2.7", "CUDA 12.8", "RTX 50", "2.1", "python_embeded"] {
        assert!(gpu.contains(fact), "{fact}: {gpu}");
    }
    let locked = KnownFailure::FileLocked.advice();
    for fact in ["Close the other Fooocus", "Python", "start Fooocus again"] {
        assert!(locked.contains(fact), "{fact}: {locked}");
    }
}

/// The live guard reads stdout and stderr with a parser each: stderr's sees only bars, so a
/// sampler run that starts over (the next task after a stop) enters sampling again; stdout's
/// sees only prints, so its phases start afresh at each image's end (2.0-2.3 tell saving only
/// by the log line, the same line for every image).
#[test]
fn read_apart_each_stream_tells_its_phases() {
    let stderr =
        "  0%|          | 0/30 [00:00<?, ?it/s]\r 10%|█         | 3/30 [00:03<00:27,  1.0s/it]\n\
  0%|          | 0/30 [00:00<?, ?it/s]\r100%|██████████| 30/30 [00:30<00:00,  1.0s/it]\n\
  0%|          | 0/30 [00:00<?, ?it/s]\n";
    assert_eq!(
        phases_from(Source::Stderr, stderr),
        vec![
            (1, "sampling"),
            (2, "sampling"),
            (2, "decode"),
            (3, "sampling")
        ]
    );
    let stdout = "[Fooocus] Initializing ...\n[Fooocus] Encoding positive #1 ...\n\
Image generated with private log at: /o/log.html\nGenerating and saving time: 5.00 seconds\n\
Image generated with private log at: /o/log.html\nGenerating and saving time: 3.00 seconds\nTotal time: 9.00 seconds\n";
    assert_eq!(
        phases_from(Source::Stdout, stdout),
        vec![(1, "preparation"), (3, "saving"), (5, "saving")]
    );
}

/// Fooocus-API's `[Task Queue] Finish task with error` (0.3.33 `worker.py:70,917`, 0.5.0.1
/// `worker.py:263,1578`): the job's id is not the error's message; 0.5's carries the error.
#[test]
fn fooocus_api_finish_with_error_tells_the_error_not_the_job() {
    let messages = |log: &str| -> Vec<String> {
        events_from(Source::Merged, log)
            .into_iter()
            .filter_map(|(_, k)| match k {
                EventKind::Error { message, .. } => Some(message),
                _ => None,
            })
            .collect()
    };
    let v03 = "[Task Queue] Task queue start task, job_id=abc\n[Task Queue] Finish task with error, job_id=abc\n\
[Task Queue] Finish task with error, seq=abd\n";
    assert_eq!(messages(v03), vec!["".to_string(), "".to_string()]);
    let v05 = "[2024-05-18 15:07:05] INFO     [Task Queue] Start task, job_id=a4, pid=7\n\
[2024-05-18 15:07:06] ERROR    [Task Queue] Finish task with error: CUDA error: no kernel image is available for execution on the device, job_id=a4\n";
    assert_eq!(
        messages(v05),
        vec!["CUDA error: no kernel image is available for execution on the device".to_string()]
    );
    assert_eq!(
        failures(Source::Stdout, v05),
        vec![(2, KnownFailure::GpuTooNew)]
    );
}

/// torch's warning when it first meets the GPU, at start-up (stderr; the lines of #3862 and
/// #4123): a GPU newer than every capability torch was built for is known before the first
/// generation fails; an older one is not this failure.
#[test]
fn a_gpu_newer_than_torch_is_known_at_start_up() {
    let warned = |device: &str, built: &str| {
        format!(
            "Fooocus version: 2.5.5\nC:\\F\\python_embeded\\lib\\site-packages\\torch\\cuda\\__init__.py:215: UserWarning:\n\
{device} is not compatible with the current PyTorch installation.\n\
The current PyTorch install supports CUDA capabilities {built}.\n\
If you want to use the NVIDIA GeForce GPU with PyTorch, please check the instructions at https://pytorch.org/get-started/locally/\n\
\n  warnings.warn(\nTotal VRAM 16303 MB, total RAM 65237 MB\n"
        )
    };
    let new = warned(
        "NVIDIA GeForce RTX 5080 with CUDA capability sm_120",
        "sm_50 sm_60 sm_61 sm_70 sm_75 sm_80 sm_86 sm_90",
    );
    assert_eq!(
        failures(Source::Stderr, &new),
        vec![(4, KnownFailure::GpuTooNew)]
    );
    assert_eq!(
        failures(Source::Merged, &new),
        vec![(4, KnownFailure::GpuTooNew)]
    );
    // torch only writes it to stderr.
    assert_eq!(failures(Source::Stdout, &new), vec![]);
    let old = warned(
        "Tesla K80 with CUDA capability sm_37",
        "sm_50 sm_60 sm_61 sm_70 sm_75 sm_80 sm_86 sm_90 compute_37",
    );
    assert_eq!(failures(Source::Stderr, &old), vec![]);
    // Once Fooocus is ready the same lines can be a prompt's.
    let late = format!(
        "App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865\n{}",
        new
    );
    assert_eq!(failures(Source::Merged, &late), vec![]);
}

/// A refiner swapped in mid-sampling (lllyasviel/Fooocus#2870's console, a saved log with the
/// print glued after the bar): the load is told, then sampling again, then the decode; the
/// text encoder reloaded after the image (`prepare_text_encoder`) is a load before the end.
#[test]
fn a_refiner_swap_mid_sampling_is_a_load_between_two_samplings() {
    let log = "[Fooocus] Preparing task 1/1 ...\n\
 80%|████████  | 24/30 [00:04<00:01,  4.95it/s]Requested to load SDXL\nLoading 1 new model\nunload clone 0\nRefiner Swapped\n\
100%|██████████| 30/30 [00:06<00:00,  4.93it/s]\nRequested to load AutoencoderKL\nLoading 1 new model\n\
Image generated with private log at: D:\\F\\outputs\\2024-05-05\\log.html\nGenerating and saving time: 7.80 seconds\n\
Requested to load SDXLClipModel\nRequested to load GPT2LMHeadModel\nLoading 2 new models\nTotal time: 18.01 seconds\n";
    assert_eq!(
        phases(log),
        vec![
            (1, "preparation"),
            (2, "sampling"),
            (2, "model_load"),
            (6, "sampling"),
            (6, "decode"),
            (9, "saving"),
            (11, "model_load"),
        ]
    );
}
