//! YUV4MPEG2 (`.y4m`), the uncompressed stream `ffmpeg -f yuv4mpegpipe`
//! reads and writes: a header line (`YUV4MPEG2 W1920 H1080 F25:1 …`),
//! then per frame a `FRAME` line and its planes, Y then U then V, each
//! row-major bytes.
//!
//! 8-bit 4:2:0 (every siting), 4:2:2, 4:4:4 and mono are read; a header's
//! other fields (rate, aspect, interlacing, `X` extensions) are kept as
//! they were and written back unchanged. Every size is checked before
//! anything is allocated, and every error names the frame it is in.

use std::io::{BufRead, Read, Write};

use crate::error::{Error, Result};

/// Bytes a header or a `FRAME` line may take at most.
const MAX_LINE: usize = 4096;

/// Pixels a side at most (a frame is then at most 768 MiB: 4:4:4).
pub const MAX_SIDE: usize = 1 << 14;

/// Bytes of a plane allocated ahead of its data at most.
const GROW: usize = 16 << 20;

/// How the chroma planes are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chroma {
    /// Half width and half height (`C420jpeg`, `C420mpeg2`, `C420paldv`,
    /// `C420`; the default when a header names none).
    C420,
    /// Half width, full height (`C422`).
    C422,
    /// Full size (`C444`).
    C444,
    /// Luma only (`Cmono`).
    Mono,
}

/// A stream's header: the frame size, the chroma layout, and the line as
/// given (written back unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The chroma layout.
    pub chroma: Chroma,
    /// The header line without its newline.
    line: String,
}

impl Header {
    /// A header for frames of `width`×`height` in `chroma` at 25 fps.
    pub fn new(width: usize, height: usize, chroma: Chroma) -> Result<Self> {
        let c = match chroma {
            Chroma::C420 => "420jpeg",
            Chroma::C422 => "422",
            Chroma::C444 => "444",
            Chroma::Mono => "mono",
        };
        Header::parse(&format!("YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C{c}"))
    }

    /// Parses a header line (without its newline).
    pub fn parse(line: &str) -> Result<Self> {
        let bad = |why: String| Error::bad(format!("the y4m header: {why}"));
        if !line.is_ascii() {
            return Err(bad("it holds characters that are not ASCII".into()));
        }
        // Fields are split by spaces; a tab or a CR (a file that went
        // through Windows) is taken as one too.
        let mut tokens = line.split_ascii_whitespace();
        if tokens.next() != Some("YUV4MPEG2") {
            let start: String = line.chars().take(16).collect();
            return Err(Error::bad(format!(
                "not a YUV4MPEG2 stream: it starts with {start:?}"
            )));
        }
        let (mut width, mut height, mut chroma) = (None, None, Chroma::C420);
        for token in tokens {
            let (key, value) = token.split_at(1);
            let side = |what: &str| {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| (1..=MAX_SIDE).contains(&n))
                    .ok_or_else(|| bad(format!("{what} '{value}' is not from 1 to {MAX_SIDE}")))
            };
            match key {
                "W" => width = Some(side("width")?),
                "H" => height = Some(side("height")?),
                "C" => {
                    chroma = match value {
                        "420jpeg" | "420paldv" | "420mpeg2" | "420" => Chroma::C420,
                        "422" => Chroma::C422,
                        "444" => Chroma::C444,
                        "mono" => Chroma::Mono,
                        other => {
                            return Err(bad(format!(
                                "colour space 'C{other}' is not supported (anycore reads 8-bit \
                                 420, 422, 444 and mono)"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        let (Some(width), Some(height)) = (width, height) else {
            return Err(bad("it gives no width (W) or no height (H)".into()));
        };
        Ok(Header {
            width,
            height,
            chroma,
            line: line.to_owned(),
        })
    }

    /// Each plane's height and width, in order.
    pub fn planes(&self) -> Vec<(usize, usize)> {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = match self.chroma {
            Chroma::C420 => (w.div_ceil(2), h.div_ceil(2)),
            Chroma::C422 => (w.div_ceil(2), h),
            Chroma::C444 => (w, h),
            Chroma::Mono => return vec![(h, w)],
        };
        vec![(h, w), (ch, cw), (ch, cw)]
    }

    /// Bytes of one frame's planes (small: sides are at most
    /// [`MAX_SIDE`]).
    pub fn frame_bytes(&self) -> usize {
        self.planes().iter().map(|(h, w)| h * w).sum()
    }

    /// Writes the header line.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(self.line.as_bytes())?;
        out.write_all(b"\n")
    }
}

/// One frame: its `FRAME` line's parameters (kept) and its planes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What followed `FRAME` on its line (usually nothing).
    pub params: String,
    /// The planes, in the order of [`Header::planes`].
    pub planes: Vec<Vec<u8>>,
}

impl Frame {
    /// Writes the frame.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(b"FRAME")?;
        out.write_all(self.params.as_bytes())?;
        out.write_all(b"\n")?;
        for p in &self.planes {
            out.write_all(p)?;
        }
        Ok(())
    }
}

/// Reads a line up to its newline (not included), at most [`MAX_LINE`]
/// bytes; `None` at the end of the input before any byte.
fn read_line(input: &mut impl BufRead, what: &str) -> Result<Option<String>> {
    let mut line = Vec::new();
    let read = input
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| Error::bad(format!("{what}: cannot read it: {e}")))?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(Error::bad(if line.len() > MAX_LINE {
            format!("{what}: its line is longer than {MAX_LINE} bytes")
        } else {
            format!("{what}: the stream ends inside its line")
        }));
    }
    line.pop();
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| Error::bad(format!("{what}: its line is not text")))
}

/// Reads a stream's frames one at a time.
pub struct Reader<R> {
    input: R,
    header: Header,
    /// Frames read so far.
    count: u64,
}

impl<R: BufRead> Reader<R> {
    /// Reads the header.
    pub fn new(mut input: R) -> Result<Self> {
        let line = read_line(&mut input, "the y4m header")?
            .ok_or_else(|| Error::bad("the y4m stream is empty"))?;
        let header = Header::parse(&line)?;
        Ok(Reader {
            input,
            header,
            count: 0,
        })
    }

    /// The stream's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next frame, or `None` at the end of the stream; an error names
    /// the frame (counted from 1).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let number = self.count + 1;
        let what = format!("frame {number}");
        let Some(line) = read_line(&mut self.input, &what)? else {
            return Ok(None);
        };
        // `FRAME`, then nothing or space-separated parameters.
        let params = line
            .strip_prefix("FRAME")
            .filter(|p| p.is_empty() || p.starts_with(' '));
        let Some(params) = params else {
            let start: String = line.chars().take(16).collect();
            return Err(Error::bad(format!(
                "{what}: expected a FRAME line, found {start:?}"
            )));
        };
        let mut planes = Vec::with_capacity(3);
        for (i, (h, w)) in self.header.planes().into_iter().enumerate() {
            // Grown as the bytes arrive: a header promising huge frames
            // costs nothing until they come.
            let want = h * w;
            let mut plane = Vec::with_capacity(want.min(GROW));
            let got = self
                .input
                .by_ref()
                .take(want as u64)
                .read_to_end(&mut plane)
                .map_err(|e| Error::bad(format!("{what}: cannot read it: {e}")))?;
            if got < want {
                let before: usize = self.header.planes()[..i].iter().map(|(h, w)| h * w).sum();
                return Err(Error::bad(format!(
                    "{what} is truncated: the stream ends after {} of its {} bytes",
                    before + got,
                    self.header.frame_bytes()
                )));
            }
            planes.push(plane);
        }
        self.count = number;
        Ok(Some(Frame {
            params: params.to_owned(),
            planes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(header: &str, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut s = format!("{header}\n").into_bytes();
        for f in frames {
            s.extend_from_slice(b"FRAME\n");
            s.extend_from_slice(f);
        }
        s
    }

    #[test]
    fn planes_follow_the_chroma_layout_with_odd_sides_rounded_up() {
        let h = |c| Header::new(5, 3, c).unwrap().planes();
        assert_eq!(h(Chroma::C420), vec![(3, 5), (2, 3), (2, 3)]);
        assert_eq!(h(Chroma::C422), vec![(3, 5), (3, 3), (3, 3)]);
        assert_eq!(h(Chroma::C444), vec![(3, 5); 3]);
        assert_eq!(h(Chroma::Mono), vec![(3, 5)]);
        let header =
            Header::parse("YUV4MPEG2 W4 H2 F30000:1001 It A1:1 XYSCSS=420 C420mpeg2").unwrap();
        assert_eq!(
            (header.chroma, header.frame_bytes()),
            (Chroma::C420, 8 + 2 + 2)
        );
    }

    #[test]
    fn frames_round_trip_with_their_header_kept() {
        let header = "YUV4MPEG2 W3 H3 F24:1 Ib A4:3 C444 XCOLORRANGE=FULL";
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|k| (0..27).map(|i| (i * 7 + k) as u8).collect())
            .collect();
        let input = stream(header, &frames);
        let mut r = Reader::new(&input[..]).unwrap();
        let mut out = Vec::new();
        r.header().write(&mut out).unwrap();
        while let Some(f) = r.next_frame().unwrap() {
            f.write(&mut out).unwrap();
        }
        assert_eq!(out, input);
    }

    #[test]
    fn bad_streams_are_refused_naming_the_frame() {
        let err = |bytes: &[u8]| match Reader::new(bytes) {
            Err(e) => e.to_string(),
            Ok(mut r) => loop {
                match r.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("read to the end"),
                    Err(e) => break e.to_string(),
                }
            },
        };
        assert!(err(b"P6\n3 3\n255\n").contains("not a YUV4MPEG2 stream"));
        assert!(err(b"YUV4MPEG2 W3 H3 C420p10\n").contains("'C420p10' is not supported"));
        assert!(err(b"YUV4MPEG2 W0 H3\n").contains("width '0'"));
        assert!(err(b"YUV4MPEG2 W3\n").contains("no width (W) or no height (H)"));
        assert!(err(b"YUV4MPEG2 W2 H2 \xc3\xa9x Cmono\n").contains("not ASCII"));
        let crlf = Header::parse("YUV4MPEG2\tW2 H2 Cmono\r").unwrap();
        assert_eq!((crlf.width, crlf.chroma), (2, Chroma::Mono));
        assert!(err(b"YUV4MPEG2 W99999999999999999999 H3\n").contains("not from 1 to"));
        assert!(err(&[b'Y'; 10_000]).contains("longer than"));
        let good = stream("YUV4MPEG2 W2 H2 Cmono", &[vec![1, 2, 3, 4]]);
        let mut truncated = good.clone();
        truncated.extend_from_slice(b"FRAME\n\x01\x02");
        assert!(
            err(&truncated)
                .contains("frame 2 is truncated: the stream ends after 2 of its 4 bytes")
        );
        let mut junk = good.clone();
        junk.extend_from_slice(b"GARBAGE\n");
        assert!(err(&junk).contains("frame 2: expected a FRAME line"));
        let mut cut = good;
        cut.extend_from_slice(b"FRA");
        assert!(err(&cut).contains("frame 2: the stream ends inside its line"));
    }
}
