//! `anycore video` end to end: y4m streams of every chroma layout and odd
//! sizes through the binary; a chain of filters against its filters one at
//! a time and `blur` against the kernel run on the plane alone; bad
//! streams and filters exit 2 naming the frame, keeping what was written;
//! memory stays flat over a long stream; ffmpeg as a real producer and
//! consumer where it is installed.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use anycore::backend::Backend;
use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{Tensor, TensorData};
use anycore::video::y4m::{Chroma, Frame, Header, Reader};
use common::{anycore, rng, stderr};
use rand::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_anycore");

/// A stream of `frames` random frames.
fn random_stream(header: &Header, frames: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut out = Vec::new();
    header.write(&mut out).unwrap();
    for _ in 0..frames {
        let planes = header
            .planes()
            .iter()
            .map(|(h, w)| (0..h * w).map(|_| rng.random()).collect())
            .collect();
        Frame {
            params: String::new(),
            planes,
        }
        .write(&mut out)
        .unwrap();
    }
    out
}

/// Every frame of a stream (which must be valid).
fn frames(stream: &[u8]) -> (Header, Vec<Frame>) {
    let mut r = Reader::new(stream).unwrap();
    let mut all = Vec::new();
    while let Some(f) = r.next_frame().unwrap() {
        all.push(f);
    }
    (r.header().clone(), all)
}

/// Runs `anycore video ARGS` with `input` on stdin; stdout, stderr, code.
fn video(args: &[&str], input: &[u8]) -> (Vec<u8>, String, i32) {
    let mut child = Command::new(BIN)
        .arg("video")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Fed from a thread: the child writes while it reads.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn streams_of_every_chroma_layout_and_odd_sizes_pass_through_unchanged() {
    let mut rng = rng();
    for (w, h, c) in [
        (17, 9, "C420jpeg"),
        (5, 7, "C420mpeg2 XYSCSS=420MPEG2"),
        (33, 1, "C422"),
        (1, 3, "C444"),
        (6, 4, "Cmono"),
    ] {
        let header =
            Header::parse(&format!("YUV4MPEG2 W{w} H{h} F30000:1001 It A4:3 {c}")).unwrap();
        let stream = random_stream(&header, 3, &mut rng);
        let (out, err, code) = video(&["--backend", "cpu"], &stream);
        assert_eq!(code, 0, "{c}: {err}");
        assert!(out == stream, "{c}: the stream changed");
        assert!(err.contains(&format!("3 frames {w}×{h}")), "{err}");
    }
}

/// Blurs a u8 plane with the `blur` kernel on the CPU, as `anycore run blur`
/// would.
fn blur_plane(plane: &[u8], h: usize, w: usize, sigma: f32) -> Vec<u8> {
    let image = Tensor::new(vec![h, w], TensorData::U8(plane.to_vec()));
    let task = Task::new(
        Job::new(Kernel::Blur)
            .input("image", image)
            .param("sigma", sigma),
    )
    .unwrap();
    let run = common::cpu().run(&task).unwrap();
    match run.outputs["out"].data() {
        TensorData::U8(v) => v.clone(),
        other => panic!("blur of u8 gave {}", other.dtype()),
    }
}

#[test]
fn a_chain_equals_its_filters_one_at_a_time_and_blur_equals_the_kernel() {
    let mut rng = rng();
    let header = Header::new(35, 21, Chroma::C420).unwrap();
    let stream = random_stream(&header, 2, &mut rng);
    let chain = [
        "blur:sigma=1.5",
        "conv2d:kernel=sharpen,planes=luma",
        "map:expr=255 - x,planes=chroma",
    ];
    let mut args = vec!["--backend", "cpu"];
    for f in &chain {
        args.extend(["--filter", f]);
    }
    let (whole, err, code) = video(&args, &stream);
    assert_eq!(code, 0, "{err}");
    let mut stepwise = stream.clone();
    for f in &chain {
        let (out, err, code) = video(&["--backend", "cpu", "--filter", f], &stepwise);
        assert_eq!(code, 0, "{f}: {err}");
        stepwise = out;
    }
    assert!(whole == stepwise, "the chain differs from its steps");

    // One blur: each plane as the kernel blurs it alone.
    let (blurred, err, code) = video(&["--backend", "cpu", "--filter", "blur:sigma=2"], &stream);
    assert_eq!(code, 0, "{err}");
    let (_, before) = frames(&stream);
    let (_, after) = frames(&blurred);
    for (b, a) in before.iter().zip(&after) {
        for ((p, q), (h, w)) in b.planes.iter().zip(&a.planes).zip(header.planes()) {
            assert_eq!(&blur_plane(p, h, w, 2.0), q);
        }
    }
}

#[test]
fn the_gpu_gives_the_cpus_frames_within_one_level() {
    if !common::gpu_required() && common::gpu().is_none() {
        return;
    }
    let mut rng = rng();
    let header = Header::new(40, 30, Chroma::C422).unwrap();
    let stream = random_stream(&header, 3, &mut rng);
    let args = |b| {
        [
            "--backend",
            b,
            "--allow-software-gpu",
            "--filter",
            "blur:sigma=2",
            "--filter",
            "conv2d:kernel=box3",
        ]
    };
    let (cpu, err, code) = video(&args("cpu"), &stream);
    assert_eq!(code, 0, "{err}");
    let (gpu, err, code) = video(&args("gpu"), &stream);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("on gpu (3)"), "{err}");
    let ((_, cpu), (_, gpu)) = (frames(&cpu), frames(&gpu));
    for (c, g) in cpu.iter().zip(&gpu) {
        for (p, q) in c.planes.iter().zip(&g.planes) {
            assert!(p.iter().zip(q).all(|(a, b)| a.abs_diff(*b) <= 1));
        }
    }
}

#[test]
fn bad_streams_exit_2_naming_the_frame_after_writing_the_frames_before() {
    let mut rng = rng();
    let header = Header::new(8, 6, Chroma::C420).unwrap();
    let stream = random_stream(&header, 4, &mut rng);
    let frame = 6 + header.frame_bytes();
    // Cut inside frame 3.
    let cut = &stream[..stream.len() - 2 * frame + 10];
    let (out, err, code) = video(&["--filter", "blur:sigma=1", "--backend", "cpu"], cut);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("frame 3 is truncated"), "{err}");
    let (_, written) = frames(&out);
    assert_eq!(
        written.len(),
        2,
        "the frames before the bad one are written whole"
    );

    for (input, want) in [
        (&b"P5\n8 6\n255\n"[..], "not a YUV4MPEG2 stream"),
        (
            &b"YUV4MPEG2 W8 H6 C420p10\nFRAME\n"[..],
            "'C420p10' is not supported",
        ),
        (&b""[..], "the y4m stream is empty"),
    ] {
        let (out, err, code) = video(&["--backend", "cpu"], input);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(want), "{err}");
        assert!(out.is_empty());
    }
    let mut junk = stream[..stream.len() - frame].to_vec();
    junk.extend_from_slice(b"FRAMES ARE OVER\n");
    let (_, err, code) = video(&["--backend", "cpu"], &junk);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("frame 4: expected a FRAME line"), "{err}");
}

#[test]
fn bad_filters_and_options_exit_2_before_reading() {
    for (args, want) in [
        (
            vec!["--filter", "blur:sigma=-1"],
            "--filter 'blur:sigma=-1'",
        ),
        (vec!["--filter", "sharpen"], "unknown filter 'sharpen'"),
        (
            vec!["--filter", "conv2d:kernel=1 2"],
            "--filter 'conv2d:kernel=1 2'",
        ),
        (vec!["--filter", "map:expr=x+q"], "unknown name 'q'"),
        (vec!["--in-flight", "0"], "--in-flight 0"),
        (
            vec!["-i", "/nonexistent.y4m"],
            "/nonexistent.y4m: cannot open it",
        ),
        (
            vec!["-o", "/nonexistent/out.y4m"],
            "the folder /nonexistent does not exist",
        ),
    ] {
        let mut all = vec!["video"];
        all.extend(&args);
        let out = anycore(&all, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

/// `-o FILE`: the file appears when the stream is done (so it may be the
/// input), holds the whole frames of a stream that went bad, and is not
/// made at all for a stream refused at its header or a GPU that is not
/// there; a write that fails keeps the file that was there.
#[test]
fn output_files_appear_whole_and_may_replace_the_input() {
    let mut rng = rng();
    let dir = tempfile::tempdir().unwrap();
    let header = Header::new(9, 7, Chroma::C420).unwrap();
    let stream = random_stream(&header, 3, &mut rng);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let mut all = vec!["video", "--filter", "blur:sigma=1"];
        all.extend(args);
        anycore(&all, &[("ANYCORE_ALLOW_SOFTWARE_GPU", "")])
    };
    std::fs::write(path("in.y4m"), &stream).unwrap();
    let (want, err, code) = video(&["--filter", "blur:sigma=1", "--backend", "cpu"], &stream);
    assert_eq!(code, 0, "{err}");

    // In place: the input is read whole before the output replaces it.
    std::fs::write(path("same.y4m"), &stream).unwrap();
    let out = run(&[
        "--backend",
        "cpu",
        "-i",
        &path("same.y4m"),
        "-o",
        &path("same.y4m"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(path("same.y4m")).unwrap() == want);

    // Cut inside frame 3: frames 1 and 2, whole, and exit 2.
    let cut = &stream[..stream.len() - 10];
    std::fs::write(path("cut.y4m"), cut).unwrap();
    let out = run(&[
        "--backend",
        "cpu",
        "-i",
        &path("cut.y4m"),
        "-o",
        &path("cut.out.y4m"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let (_, written) = frames(&std::fs::read(path("cut.out.y4m")).unwrap());
    assert_eq!(written.len(), 2);

    // Refused before the output begins: no file.
    std::fs::write(path("bad.txt"), "not a video at all\n").unwrap();
    let out = run(&["-i", &path("bad.txt"), "-o", &path("bad.y4m")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad.txt: not a YUV4MPEG2 stream"),
        "{}",
        stderr(&out)
    );
    // No hardware GPU here, and software ones not allowed (with one, the
    // run works and the file appears).
    let out = run(&[
        "--backend",
        "gpu",
        "-i",
        &path("in.y4m"),
        "-o",
        &path("gpu.y4m"),
    ]);
    if out.status.success() {
        assert!(std::fs::read(path("gpu.y4m")).is_ok());
        std::fs::remove_file(path("gpu.y4m")).unwrap();
    } else {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("--backend gpu needs a GPU adapter"),
            "{}",
            stderr(&out)
        );
    }
    // Neither refused run made its file, nor left a partial one.
    assert!(!dir.path().join("bad.y4m").exists() && !dir.path().join("gpu.y4m").exists());
    assert_no_partial_files(dir.path());

    // A write that fails (the file size limit: `ulimit -f`, in 512-byte
    // blocks) leaves the file that was there, not a torn one, and says
    // so, whether or not the stream also went bad.
    let big = Header::new(320, 240, Chroma::C420).unwrap();
    let stream = random_stream(&big, 6, &mut rng);
    std::fs::write(path("big.y4m"), &stream).unwrap();
    std::fs::write(path("big.cut.y4m"), &stream[..stream.len() - 10]).unwrap();
    for input in ["big.y4m", "big.cut.y4m"] {
        std::fs::write(path("kept.y4m"), "the old file").unwrap();
        let script = format!(
            "trap '' XFSZ; ulimit -f 400; exec {BIN} video --backend cpu -i {} -o {}",
            path(input),
            path("kept.y4m")
        );
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{input}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("kept.y4m") && stderr(&out).contains("File too large"),
            "{input}: {}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read_to_string(path("kept.y4m")).unwrap(),
            "the old file"
        );
    }
    assert_no_partial_files(dir.path());
}

/// Fails when `dir` holds a hidden (partial) file.
fn assert_no_partial_files(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with('.'),
            "a partial file was left behind: {name:?}"
        );
    }
}

/// Peak resident memory of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn memory_stays_flat_however_long_the_stream() {
    let header = Header::new(640, 480, Chroma::C420).unwrap();
    let mut rng = rng();
    let frame = random_stream(&header, 1, &mut rng);
    let body = &frame[frame.iter().position(|&b| b == b'\n').unwrap() + 1..];
    let mut child = Command::new(BIN)
        .args([
            "video",
            "--backend",
            "cpu",
            "--filter",
            "blur:sigma=1",
            "--in-flight",
            "2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(k) = stdout.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    });
    let mut stdin = child.stdin.take().unwrap();
    header.write(&mut stdin).unwrap();
    // 400 frames of 460 KB: 184 MB through, far more than the bound.
    let frames = 400;
    let mut peak_early = 0;
    for i in 0..frames {
        stdin.write_all(body).unwrap();
        if i == 40 {
            peak_early = peak_rss_kib(pid).unwrap_or(0);
        }
    }
    let peak_late = peak_rss_kib(pid).unwrap_or(0);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let written = drain.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(written, (frame.len() + (frames - 1) * body.len()) as u64);
    // Not growing with the stream: the peak after 400 frames is the peak
    // after 40, give or take allocator noise, and well under the data.
    assert!(
        peak_late > 0 && peak_late < 128 * 1024,
        "peak RSS {peak_late} KiB"
    );
    assert!(
        peak_late < peak_early + 16 * 1024,
        "peak RSS grew from {peak_early} to {peak_late} KiB"
    );
}

#[test]
fn ffmpeg_produces_and_consumes_the_stream() {
    let have_ffmpeg = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_ffmpeg {
        assert!(
            std::env::var("ANYCORE_REQUIRE_FFMPEG").is_err(),
            "ANYCORE_REQUIRE_FFMPEG is set but ffmpeg is not installed (scripts/install-deps.sh --video)"
        );
        eprintln!("skipping: no ffmpeg");
        return;
    }
    let quiet = ["-hide_banner", "-loglevel", "error"];
    let mut producer = Command::new("ffmpeg")
        .args(quiet)
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x96:rate=25",
            "-frames:v",
            "12",
        ])
        .args(["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut filter = Command::new(BIN)
        .args(["video", "--backend", "cpu", "--filter", "blur:sigma=2"])
        .stdin(producer.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let consumer = Command::new("ffmpeg")
        .args(quiet)
        .args(["-f", "yuv4mpegpipe", "-i", "-", "-f", "framemd5", "-"])
        .stdin(filter.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(producer.wait().unwrap().success());
    let filtered = filter.wait_with_output().unwrap();
    assert!(
        filtered.status.success(),
        "{}",
        String::from_utf8_lossy(&filtered.stderr)
    );
    assert!(String::from_utf8_lossy(&filtered.stderr).contains("12 frames 160×96"));
    assert!(
        consumer.status.success(),
        "{}",
        String::from_utf8_lossy(&consumer.stderr)
    );
    let md5s = String::from_utf8_lossy(&consumer.stdout);
    assert_eq!(
        md5s.lines().filter(|l| !l.starts_with('#')).count(),
        12,
        "{md5s}"
    );
}

/// Gives `stream` a frame at a time, pausing before each until `go` lets
/// it (a slow producer), and says when it has given everything.
struct Paced {
    stream: Vec<u8>,
    at: usize,
    frame: usize,
    header: usize,
    go: std::sync::mpsc::Receiver<()>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.stream.len() {
            self.done.store(true, std::sync::atomic::Ordering::SeqCst);
            return Ok(0);
        }
        if self.at >= self.header && (self.at - self.header).is_multiple_of(self.frame) {
            let _ = self.go.recv();
        }
        let end = if self.at < self.header {
            self.header
        } else {
            self.at + self.frame - (self.at - self.header) % self.frame
        };
        let n = buf.len().min(end - self.at);
        buf[..n].copy_from_slice(&self.stream[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_streams_a_video_job_while_answering_others() {
    // A body limit of 1 KiB: a video several times larger goes through,
    // as it is never held whole. Caps apply to the filters.
    let caps = anycore::service::caps::Caps::new(&["blur.sigma=3".to_owned()], None).unwrap();
    let config = anycore::service::ServiceConfig {
        body_limit: 1024,
        caps,
        ..Default::default()
    };
    let server = common::server::Server::start_with(8, config).await;
    let header = Header::new(33, 17, Chroma::C420).unwrap();
    let stream = random_stream(&header, 6, &mut rng());
    assert!(stream.len() > 4 * 1024);
    let query = "/v1/video?filter=blur:sigma=1.5&filter=conv2d:kernel=edge,planes=luma&backend=cpu";
    // The same as `anycore video` gives, and larger than the body limit
    // (1 MiB here would be hit by 6 frames of 1080p, not these; the
    // stream is never held whole either way).
    let (status, body) = server.bytes(query, Some(stream.clone())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (cli, err, code) = video(
        &[
            "--backend",
            "cpu",
            "--filter",
            "blur:sigma=1.5",
            "--filter",
            "conv2d:kernel=edge,planes=luma",
        ],
        &stream,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        body == cli,
        "the service's stream differs from the command line's"
    );

    // A slow producer: while its stream is half sent, another job is
    // answered.
    let (go, wait) = std::sync::mpsc::channel();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let paced = Paced {
        header: stream.iter().position(|&b| b == b'\n').unwrap() + 1,
        frame: 6 + header.frame_bytes(),
        stream: stream.clone(),
        at: 0,
        go: wait,
        done: done.clone(),
    };
    let url = format!("{}{query}", server.url);
    let upload = tokio::task::spawn_blocking(move || {
        let mut response = ureq::post(&url)
            .header("content-type", "video/x-yuv4mpeg")
            .send(ureq::SendBody::from_owned_reader(paced))
            .unwrap();
        response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap()
    });
    for _ in 0..3 {
        go.send(()).unwrap();
    }
    let job = serde_json::json!({
        "kernel": "reduce",
        "inputs": {"x": {"dtype": "f32", "shape": [3], "data": [1.0, 2.0, 3.5]}},
    });
    let (status, _, text) = server.call("POST", "/v1/jobs", Some(job.to_string())).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("6.5"), "{text}");
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "the video was still being sent"
    );
    for _ in 0..3 {
        go.send(()).unwrap();
    }
    let streamed = upload.await.unwrap();
    assert!(streamed == cli, "the paced stream differs");

    // Cut inside its last frame: the answer holds every whole frame before
    // it (hyper sends them before the error cuts the connection), then
    // ends short of a proper end. Twice, as losing them was a race (each
    // answer cut short lingers 2 s before its end, for hyper to flush).
    let (_, want) = frames(&cli);
    for _ in 0..2 {
        let cut = stream[..stream.len() - 10].to_vec();
        let url = format!("{}{query}", server.url);
        let (got, ended) = tokio::task::spawn_blocking(move || {
            let mut response = ureq::post(&url)
                .header("content-type", "video/x-yuv4mpeg")
                .send(&cut[..])
                .unwrap();
            let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
            let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
            let ended = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break Some(e.to_string()),
                }
            };
            (got, ended)
        })
        .await
        .unwrap();
        assert!(ended.is_some(), "the answer ended as if whole");
        let (_, whole) = frames(&got);
        assert_eq!(whole.len(), 5, "every frame before the cut one");
        assert!(whole[..] == want[..5], "the frames differ");
    }

    // Gone bad in its third frame of eight while tens of MB are still
    // being sent: the rest is read and dropped (a connection closed with
    // request bytes unread is reset, losing what the client has not read),
    // and the two frames before come back whole.
    let big = Header::new(1920, 1080, Chroma::C420).unwrap();
    let mut bad = random_stream(&big, 8, &mut rng());
    let line = bad.iter().position(|&b| b == b'\n').unwrap() + 1;
    let third = line + 2 * (6 + big.frame_bytes());
    bad[third..third + 6].copy_from_slice(b"FRAMX\n");
    let url = format!("{}/v1/video?filter=blur:sigma=1&backend=cpu", server.url);
    let got = tokio::task::spawn_blocking(move || {
        // Within a minute (a server that stopped reading would hang it).
        let mut response = common::server::agent()
            .post(&url)
            .header("content-type", "video/x-yuv4mpeg")
            .send(&bad[..])
            .expect("the whole request is taken");
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        let (mut got, mut buf) = (Vec::new(), vec![0u8; 1 << 16]);
        while let Ok(n) = reader.read(&mut buf)
            && n > 0
        {
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
    .await
    .unwrap();
    let (_, whole) = frames(&got);
    assert_eq!(whole.len(), 2, "the frames before the bad one");

    // Refusals before the answer starts, as JSON.
    for (path, body, want) in [
        (
            "/v1/video?filter=blur:sigma=-1",
            stream.clone(),
            "parameter 'sigma' of blur",
        ),
        (
            "/v1/video?filtre=blur",
            stream.clone(),
            "unknown query parameter 'filtre'",
        ),
        (
            "/v1/video",
            b"P5\n1 1\n255\n\x00".to_vec(),
            "not a YUV4MPEG2 stream",
        ),
        ("/v1/video?filter=blur:sigma=20", stream.clone(), "over_cap"),
        (
            "/v1/video?filter=blur:sigma=1&backend=gpu",
            stream.clone(),
            "no_gpu",
        ),
    ] {
        let (status, body) = server.bytes(path, Some(body)).await;
        let text = String::from_utf8_lossy(&body);
        assert!(status == 400 || status == 422, "{status} {text}");
        assert!(text.contains(want) && text.contains("\"error\""), "{text}");
    }
    server.stop().await;
}

/// Slows the first pipeline it runs by a second; the rest go at once.
struct SlowFirst {
    engine: anycore::engine::BlockingEngine,
    first: std::sync::atomic::AtomicBool,
}

impl anycore::engine::Runner for SlowFirst {
    fn run_pipeline(
        &self,
        pipeline: anycore::pipeline::Pipeline,
        choice: anycore::backend::BackendChoice,
    ) -> anycore::Result<anycore::coordinator::PipelineReport> {
        if self.first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        self.engine.run_pipeline_on(pipeline, choice)
    }
}

/// Counts the bytes read through it.
struct Counted(
    std::io::Cursor<Vec<u8>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
);

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }
}

#[test]
fn a_slow_frame_holds_back_the_reading_not_only_the_writing() {
    let header = Header::new(16, 8, Chroma::C420).unwrap();
    let stream = random_stream(&header, 40, &mut rng());
    let frame = 6 + header.frame_bytes();
    let head = stream.len() - 40 * frame;
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let input =
        std::io::BufReader::with_capacity(16, Counted(std::io::Cursor::new(stream), read.clone()));
    let runner = SlowFirst {
        engine: common::engine(anycore::backend::gpu::GpuOptions::default()),
        first: std::sync::atomic::AtomicBool::new(true),
    };
    let filters = [anycore::video::filter::Filter::parse("blur:sigma=1").unwrap()];
    let in_flight = 2;
    let mut read_at_first = None;
    let mut out = Vec::new();
    let summary = anycore::video::process(
        &runner,
        Reader::new(input).unwrap(),
        &mut out,
        &filters,
        anycore::backend::BackendChoice::Cpu,
        in_flight,
        |_| {
            read_at_first.get_or_insert(read.load(std::sync::atomic::Ordering::SeqCst));
        },
    )
    .unwrap();
    assert_eq!(summary.frames, 40);
    // While the first frame was held up, at most `in_flight` frames (and
    // the reader's next one) were read.
    let read_then = read_at_first.unwrap();
    assert!(
        read_then <= head + (in_flight + 1) * frame + 16,
        "{} frames read before the first was written",
        (read_then - head) as f64 / frame as f64
    );
}
