//! Video through kernels: a YUV4MPEG2 stream ([`y4m`]) read, filtered
//! frame by frame ([`filter`]) and written, with reading, computing and
//! writing overlapped and a bounded number of frames in flight, so memory
//! stays constant however long the stream, and a slow reader of the output
//! slows the reading of the input instead of filling memory.
//!
//! Each plane of a frame goes through the chain as a u8 `[h, w]` image:
//! the filters that take u8 (`blur`, `conv2d`) run as one pipeline, the
//! plane kept on the device between them on the GPU; `map` sees the plane
//! as f32 and its result is rounded back to u8. A chain is therefore
//! exactly its filters applied one at a time, each to a y4m of the
//! previous one's output.

pub mod filter;
pub mod y4m;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use serde::Serialize;

use self::filter::Filter;
use self::y4m::{Frame, Reader};
use crate::backend::BackendChoice;
use crate::engine::Runner;
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::tensor::{Tensor, TensorData};

/// Frames in flight at most by default: read ahead, being computed, and
/// waiting to be written in order.
pub const IN_FLIGHT: usize = 4;

/// What a run did, for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Frames written.
    pub frames: u64,
    /// Frame width.
    pub width: usize,
    /// Frame height.
    pub height: usize,
    /// The filters, as given.
    pub filters: Vec<String>,
    /// Frames per backend that computed them (`gpu`, `cpu`; a frame whose
    /// planes went to both counts for each).
    pub backends: BTreeMap<String, u64>,
    /// Seconds from the header to the last frame written.
    pub seconds: f64,
    /// Frames a second.
    pub fps: f64,
    /// Megabytes of frames a second (in, which is also out).
    pub mb_per_s: f64,
}

/// Filters every frame `reader` reads with `filters` on `engine` (placed
/// by `choice`), and writes the stream to `output`; at most `in_flight`
/// frames at once. `progress` sees the summary after each frame written.
/// A bad stream ends with an error naming the frame, after every frame
/// before it was written: the output is a valid stream.
pub fn process<R: BufRead + Send + 'static, W: Write>(
    engine: &dyn Runner,
    mut reader: Reader<R>,
    mut output: W,
    filters: &[Filter],
    choice: BackendChoice,
    in_flight: usize,
    mut progress: impl FnMut(&Summary),
) -> Result<Summary> {
    let start = Instant::now();
    let header = reader.header().clone();
    let written =
        |e: std::io::Error| Error::Internal(format!("cannot write the output stream: {e}"));
    header.write(&mut output).map_err(written)?;
    let mut summary = Summary {
        width: header.width,
        height: header.height,
        filters: filters.iter().map(|f| f.text.clone()).collect(),
        ..Summary::default()
    };
    let in_flight = in_flight.max(1);
    let frame_bytes = header.frame_bytes() as f64;
    let dims = header.planes();
    // A frame is read only with a permit, which comes back once it is
    // written: at most `in_flight` frames between reading and writing,
    // whichever of them is slow.
    let (permits_tx, permits_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        permits_tx.send(()).expect("room for every permit");
    }
    let (frames_tx, frames_rx) = sync_channel::<(u64, Frame)>(in_flight);
    let (done_tx, done_rx) = sync_channel::<(u64, Result<Done>)>(in_flight);
    let frames_rx = Mutex::new(frames_rx);
    let stop = AtomicBool::new(false);
    // The reader is not joined: after an error it may be blocked reading
    // an input that never ends (a live source), and then it ends with the
    // process, or with its input.
    let reader_done = done_tx.clone();
    std::thread::Builder::new()
        .name("anycore-video-read".into())
        .spawn(move || read_all(&mut reader, &permits_rx, &frames_tx, &reader_done))
        .map_err(|e| Error::Internal(format!("cannot start the video reader: {e}")))?;
    let outcome = std::thread::scope(|scope| {
        for _ in 0..in_flight {
            let (frames_rx, done_tx, dims, stop) = (&frames_rx, done_tx.clone(), &dims, &stop);
            scope.spawn(move || {
                compute_all(engine, frames_rx, stop, &done_tx, dims, filters, choice)
            });
        }
        drop(done_tx);
        // Written in order as they come: at most the frames in flight wait.
        let mut pending: HashMap<u64, Result<Done>> = HashMap::new();
        let mut next = 0u64;
        let mut write_in_order = || -> Result<()> {
            for (index, result) in done_rx.iter() {
                pending.insert(index, result);
                while let Some(result) = pending.remove(&next) {
                    let done = result?;
                    done.frame.write(&mut output).map_err(written)?;
                    // Never full: one permit per frame taken.
                    let _ = permits_tx.try_send(());
                    for b in done.backends {
                        *summary.backends.entry(b).or_default() += 1;
                    }
                    next += 1;
                    summary.frames = next;
                    summary.seconds = start.elapsed().as_secs_f64();
                    summary.fps = next as f64 / summary.seconds.max(1e-9);
                    summary.mb_per_s = summary.fps * frame_bytes / 1e6;
                    progress(&summary);
                }
                // Out as soon as written, for a live source's consumer.
                output.flush().map_err(written)?;
            }
            Ok(())
        };
        // On an error the frames before it are out, whole: a valid stream.
        let result = write_in_order();
        let flushed = output.flush().map_err(written);
        // On an error the workers stop (the scope waits for them), and
        // the reader's next permit or send fails.
        stop.store(true, Ordering::Relaxed);
        drop(done_rx);
        drop(permits_tx);
        result.and(flushed)
    });
    outcome?;
    Ok(summary)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A filtered frame and the backends that computed it.
struct Done {
    frame: Frame,
    backends: Vec<String>,
}

/// The reader's loop: a permit, then a frame to the workers; an error (a
/// bad frame) to the writer, where it takes its place in the order.
fn read_all<R: BufRead>(
    reader: &mut Reader<R>,
    permits: &Receiver<()>,
    frames: &SyncSender<(u64, Frame)>,
    done: &SyncSender<(u64, Result<Done>)>,
) {
    for index in 0.. {
        if permits.recv().is_err() {
            return; // the writer is gone
        }
        match reader.next_frame() {
            Ok(Some(frame)) => {
                if frames.send((index, frame)).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = done.send((index, Err(e)));
                return;
            }
        }
    }
}

/// A worker's loop: frames in, filtered frames out, until either side is
/// gone.
fn compute_all(
    engine: &dyn Runner,
    frames: &Mutex<Receiver<(u64, Frame)>>,
    stop: &AtomicBool,
    done: &SyncSender<(u64, Result<Done>)>,
    dims: &[(usize, usize)],
    filters: &[Filter],
    choice: BackendChoice,
) {
    loop {
        // Waits a little at a time, so that a stop is seen also while the
        // reader waits on its input.
        let next = lock(frames).recv_timeout(Duration::from_millis(50));
        let (index, frame) = match next {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
            Err(_) => return,
        };
        let result = filter_frame(engine, frame, dims, filters, choice)
            .map_err(|e| e.context(&format!("frame {}", index + 1)));
        if done.send((index, result)).is_err() {
            return;
        }
    }
}

/// Applies the chain to each plane of `frame`, each `(h, w)` as `dims`
/// says ([`y4m::Header::planes`]).
fn filter_frame(
    engine: &dyn Runner,
    mut frame: Frame,
    dims: &[(usize, usize)],
    filters: &[Filter],
    choice: BackendChoice,
) -> Result<Done> {
    let mut backends = Vec::new();
    for (i, (plane, &(h, w))) in frame.planes.iter_mut().zip(dims).enumerate() {
        let chain: Vec<&Filter> = filters.iter().filter(|f| f.planes.contains(i)).collect();
        if chain.is_empty() {
            continue;
        }
        let mut tensor = Tensor::new(vec![h, w], TensorData::U8(std::mem::take(plane)));
        // Runs of u8 filters as one pipeline; `map` on its own.
        let mut rest = &chain[..];
        while !rest.is_empty() {
            let run = rest.iter().take_while(|f| f.takes_u8()).count().max(1);
            let (now, later) = rest.split_at(run);
            let (out, backend) = run_pipeline(engine, tensor, now, choice)?;
            tensor = out;
            if !backends.contains(&backend) {
                backends.push(backend);
            }
            rest = later;
        }
        *plane = match tensor.into_data() {
            TensorData::U8(v) => v,
            other => unreachable!("filters give u8 planes, not {}", other.dtype()),
        };
    }
    Ok(Done { frame, backends })
}

/// Runs filters on one u8 plane as one pipeline (kept on the device
/// between them on the GPU): a run of u8 filters, or one `map`.
fn run_pipeline(
    engine: &dyn Runner,
    plane: Tensor,
    chain: &[&Filter],
    choice: BackendChoice,
) -> Result<(Tensor, String)> {
    let mut pipeline = Pipeline::new().input("plane", chain[0].plane_in(plane));
    for (k, f) in chain.iter().enumerate() {
        let step = f.step(&format!("f{k}"));
        pipeline = pipeline.step(if k == 0 {
            step.input_shared(f.input(), "plane")
        } else {
            step.input_from(f.input(), &format!("f{}", k - 1), "out")
        });
    }
    let last = format!("f{}", chain.len() - 1);
    let report = engine.run_pipeline(pipeline.output("out", &last, "out"), choice)?;
    let out = report
        .outputs
        .into_values()
        .next()
        .expect("the pipeline gives out");
    let last = chain.last().expect("a chain has filters");
    Ok((last.plane_out(out), report.backend.name().to_owned()))
}
