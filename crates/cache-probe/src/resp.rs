//! RESP2 and RESP3, parsed from one direction of a connection as its bytes
//! arrive: in pieces, with holes where a syscall moved more bytes than the
//! kernel side copied.
//!
//! A hole inside a bulk string's payload costs nothing: its length is known,
//! so it is skipped. A hole anywhere else (in a type byte, a length line, an
//! integer) loses the framing: the stream reports a resync and, for
//! requests, drops bytes up to the next plausible start of a command array.
//! Values are kept small: of a bulk string only its length and as many of
//! its first bytes as the reader asks for (the probe needs command names,
//! keys and channel names, never values).
//!
//! What a syscall moved is read where it lies ([`Stream::feed`]) while the
//! stream holds nothing from before: only the unfinished end of it, if
//! any, is copied and kept for the next syscall. Requests in the shape
//! clients send them (an array of bulk strings) are read in place by
//! [`Feed::next_words`], with no value built: that is nearly every command
//! of a busy server.

use std::collections::VecDeque;

/// Bytes kept of each bulk string, at most.
pub const KEEP: usize = 256;
/// Bytes a [`Text`] holds without allocating.
const INLINE: usize = 22;
/// Deepest nesting parsed (arrays of arrays of …); deeper is a framing error.
const MAX_DEPTH: usize = 8;
/// Most words of a request read by [`Feed::next_words`]; longer ones go
/// through the general parser.
const FAST_WORDS: usize = 16;
/// Most elements of one aggregate; more is taken for a framing error.
const MAX_ELEMENTS: i64 = 1 << 24;

/// The first bytes of a string: up to `INLINE` of them without an
/// allocation (a reply's `OK`, `QUEUED`, a type name, a push's kind).
#[derive(Clone, PartialEq, Eq)]
pub enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Text {
    pub fn new(bytes: &[u8]) -> Text {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Text::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Text::Heap(bytes.into())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Text::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Text::Heap(bytes) => bytes,
        }
    }

    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Text::Heap(bytes) => bytes.into_vec(),
            inline => inline.as_slice().to_vec(),
        }
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

/// A parsed value, with bulk strings cut to what the reader keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+`, and RESP3 verbatim strings, big numbers, doubles, booleans.
    Simple(Text),
    /// `-` and RESP3 `!`: the error's message, cut to [`KEEP`] bytes; its
    /// first word is its code (`ERR`, `WRONGTYPE`, …, see [`error_code`]).
    Error(String),
    Integer(i64),
    /// `$`: its length, and its first bytes (as many as the reader keeps).
    Bulk {
        len: usize,
        head: Text,
    },
    /// `$-1`, `*-1`, RESP3 `_`.
    Nil,
    /// `*`, RESP3 `~` (set) and `%` (map, flattened: key, value, …).
    Array(Vec<Value>),
    /// RESP3 `>`: out-of-band data, pub/sub messages.
    Push(Vec<Value>),
}

impl Value {
    /// A bulk string kept whole (tests, and values built by hand).
    pub fn bulk(bytes: &[u8]) -> Value {
        Value::Bulk {
            len: bytes.len(),
            head: Text::new(bytes),
        }
    }

    /// A simple string.
    pub fn simple(bytes: &[u8]) -> Value {
        Value::Simple(Text::new(bytes))
    }

    /// Bulk or simple string contents, as kept.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk { head, .. } | Value::Simple(head) => Some(head.as_slice()),
            _ => None,
        }
    }
}

/// An error message's code: its first word (`ERR`, `WRONGTYPE`, `NOPERM`).
pub fn error_code(message: &str) -> &str {
    message.split(' ').next().unwrap_or_default()
}

#[derive(Debug)]
enum Segment {
    Data(Vec<u8>, usize),
    /// Bytes that moved but were not captured.
    Hole(usize),
}

/// One direction of one connection.
#[derive(Debug, Default)]
pub struct Stream {
    /// What was moved and not yet read: the unfinished end of earlier
    /// syscalls, and holes.
    segments: VecDeque<Segment>,
    /// Framing was lost: drop bytes until a command array seems to start.
    lost: bool,
    /// Requests can resync on `*<n>\r\n$`; replies cannot.
    requests: bool,
    /// Bytes of holes passed inside bulk payloads, not yet reported.
    skipped: u64,
}

/// What [`Feed::next_value`] found.
#[derive(Debug, PartialEq)]
pub enum Next {
    Value(Value),
    /// Not enough bytes yet.
    Incomplete,
    /// Framing lost (and, for requests, found again further on).
    Resync,
}

/// A syscall's bytes being read: from where they lie while the stream held
/// nothing before them, else from the stream, where they were copied. What
/// is left unread when the feed is dropped is kept for the next syscall.
pub struct Feed<'a> {
    stream: &'a mut Stream,
    /// Bytes not yet read, not copied (empty once in the stream).
    input: &'a [u8],
}

impl Stream {
    pub fn requests() -> Self {
        Stream {
            requests: true,
            ..Default::default()
        }
    }

    pub fn replies() -> Self {
        Stream::default()
    }

    /// Appends what a syscall moved: `captured` bytes of its `length`.
    pub fn push(&mut self, captured: &[u8], length: usize) {
        self.feed(captured, length.saturating_sub(captured.len()))
            .keep();
    }

    /// Starts reading what a syscall moved: `data`, then `missed` bytes not
    /// captured.
    pub fn feed<'a>(&'a mut self, data: &'a [u8], missed: usize) -> Feed<'a> {
        if self.segments.is_empty() && !self.lost && missed == 0 {
            return Feed {
                stream: self,
                input: data,
            };
        }
        if !data.is_empty() {
            self.segments.push_back(Segment::Data(data.to_vec(), 0));
        }
        if missed > 0 {
            self.segments.push_back(Segment::Hole(missed));
        }
        Feed {
            stream: self,
            input: &[],
        }
    }

    /// Bytes not captured that were skipped inside bulk strings since the
    /// last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Drops everything buffered (the connection's framing is unknown).
    pub fn clear(&mut self) {
        self.segments.clear();
    }

    /// The next complete value from the buffered segments, bulk strings
    /// cut to `keep` bytes.
    fn next_value(&mut self, keep: usize) -> Next {
        if self.lost {
            if !self.resync() {
                return Next::Incomplete;
            }
            self.lost = false;
        }
        let mut cursor = Cursor::new(Source::Owned(&self.segments), keep);
        match parse(&mut cursor, 0) {
            Ok(value) => {
                let (index, offset) = (cursor.index, cursor.offset);
                self.skipped += cursor.skipped;
                self.consume(index, offset);
                Next::Value(value)
            }
            Err(Fault::Incomplete) => Next::Incomplete,
            Err(Fault::Framing) => {
                self.lost = true;
                // Drop the byte that misled us, then look for a new start.
                self.skip_one();
                if self.requests {
                    self.resync();
                    self.lost = !self.requests_can_start();
                } else {
                    self.segments.clear();
                    self.lost = false;
                }
                Next::Resync
            }
        }
    }

    /// The next request from the front data segment, if it lies whole
    /// there in the common shape (see [`Feed::next_words`]).
    fn next_words<R>(&mut self, take: impl FnOnce(&[&[u8]]) -> R) -> Option<R> {
        if self.lost {
            return None;
        }
        let Some(Segment::Data(data, start)) = self.segments.front_mut() else {
            return None;
        };
        let (taken, used) = words(&data[*start..], take)?;
        *start += used;
        if *start >= data.len() {
            self.segments.pop_front();
        }
        Some(taken)
    }

    fn requests_can_start(&self) -> bool {
        matches!(self.segments.front(), Some(Segment::Data(d, start)) if d.get(*start) == Some(&b'*'))
    }

    fn consume(&mut self, index: usize, offset: usize) {
        for _ in 0..index {
            self.segments.pop_front();
        }
        match self.segments.front_mut() {
            Some(Segment::Data(data, start)) => {
                *start = offset;
                if *start >= data.len() {
                    self.segments.pop_front();
                }
            }
            Some(Segment::Hole(n)) => {
                *n -= offset.min(*n);
                if *n == 0 {
                    self.segments.pop_front();
                }
            }
            None => {}
        }
    }

    fn skip_one(&mut self) {
        match self.segments.front_mut() {
            Some(Segment::Data(data, start)) => {
                *start += 1;
                if *start >= data.len() {
                    self.segments.pop_front();
                }
            }
            Some(Segment::Hole(_)) => {
                self.segments.pop_front();
            }
            None => {}
        }
    }

    /// Drops bytes until the front looks like the start of a command array
    /// (`*<digits>\r\n$`) right after a line end, or a hole. True when one is
    /// found.
    fn resync(&mut self) -> bool {
        loop {
            match self.segments.front_mut() {
                None => return false,
                Some(Segment::Hole(_)) => {
                    self.segments.pop_front();
                }
                Some(Segment::Data(data, start)) => {
                    let rest = &data[*start..];
                    match find_command_start(rest) {
                        Some(at) => {
                            *start += at;
                            return true;
                        }
                        None => {
                            self.segments.pop_front();
                        }
                    }
                }
            }
        }
    }
}

impl Feed<'_> {
    /// The next request when it lies whole at the front, framed as clients
    /// send commands (an array of at most `FAST_WORDS` bulk strings): its
    /// words go to `take`, borrowed, without a [`Value`] being built, and
    /// are consumed. `None` when it is not that; [`Feed::next_value`] then
    /// tells what it is (incomplete, another shape, a framing error).
    pub fn next_words<R>(&mut self, take: impl FnOnce(&[&[u8]]) -> R) -> Option<R> {
        if self.input.is_empty() {
            return self.stream.next_words(take);
        }
        let (taken, used) = words(self.input, take)?;
        self.input = &self.input[used..];
        Some(taken)
    }

    /// The next complete value, bulk strings cut to `keep` bytes.
    pub fn next_value(&mut self, keep: usize) -> Next {
        if let Some((value, used)) = scalar(self.input, keep) {
            self.input = &self.input[used..];
            return Next::Value(value);
        }
        if !self.input.is_empty() {
            let mut cursor = Cursor::new(Source::Slice(self.input), keep);
            match parse(&mut cursor, 0) {
                Ok(value) => {
                    let used = if cursor.index == 0 {
                        cursor.offset
                    } else {
                        self.input.len()
                    };
                    self.input = &self.input[used..];
                    return Next::Value(value);
                }
                // Kept for the next syscall, or read again from the stream,
                // which handles a framing error.
                Err(Fault::Incomplete) => {
                    self.keep();
                    return Next::Incomplete;
                }
                Err(Fault::Framing) => self.keep(),
            }
        }
        self.stream.next_value(keep)
    }

    /// Copies what is left unread into the stream.
    fn keep(&mut self) {
        if !self.input.is_empty() {
            self.stream
                .segments
                .push_back(Segment::Data(self.input.to_vec(), 0));
            self.input = &[];
        }
    }

    /// Bytes skipped inside bulk strings so far.
    pub fn take_skipped(&mut self) -> u64 {
        self.stream.take_skipped()
    }
}

impl Drop for Feed<'_> {
    fn drop(&mut self) {
        self.keep();
    }
}

/// A request at the start of `bytes` in the common shape, its words handed
/// to `take`: what `take` made of them and the bytes the request took.
fn words<R>(bytes: &[u8], take: impl FnOnce(&[&[u8]]) -> R) -> Option<(R, usize)> {
    if bytes.first() != Some(&b'*') {
        return None;
    }
    let (count, used) = number_in(&bytes[1..])?;
    let count = usize::try_from(count)
        .ok()
        .filter(|n| (1..=FAST_WORDS).contains(n))?;
    let mut at = 1 + used;
    let mut words: [&[u8]; FAST_WORDS] = [&[]; FAST_WORDS];
    for word in &mut words[..count] {
        if bytes.get(at) != Some(&b'$') {
            return None;
        }
        let (len, used) = number_in(&bytes[at + 1..])?;
        let begin = at + 1 + used;
        let end = begin.checked_add(usize::try_from(len).ok()?)?;
        if bytes.get(end..end + 2) != Some(b"\r\n") {
            return None;
        }
        *word = &bytes[begin..end];
        at = end + 2;
    }
    Some((take(&words[..count]), at))
}

/// A reply at the start of `bytes` that is one whole simple string, integer
/// or bulk string (most replies), and the bytes it took: read without a
/// cursor. `None` for anything else, left to the parser.
fn scalar(bytes: &[u8], keep: usize) -> Option<(Value, usize)> {
    match bytes.first()? {
        b'+' => {
            let end = line_end(&bytes[1..])?;
            Some((
                Value::Simple(Text::new(&bytes[1..1 + end.min(KEEP)])),
                end + 3,
            ))
        }
        b':' => {
            let (n, used) = number_in(&bytes[1..])?;
            Some((Value::Integer(n), 1 + used))
        }
        b'$' => {
            let (len, used) = number_in(&bytes[1..])?;
            if len < 0 {
                return Some((Value::Nil, 1 + used));
            }
            let start = 1 + used;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            if bytes.get(end..end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            let head = Text::new(&bytes[start..end.min(start + keep.min(KEEP))]);
            Some((
                Value::Bulk {
                    len: len as usize,
                    head,
                },
                end + 2,
            ))
        }
        _ => None,
    }
}

/// Where the `\r\n` ending a line at the start of `bytes` is, if whole
/// there and within 64 KiB.
fn line_end(bytes: &[u8]) -> Option<usize> {
    let window = &bytes[..bytes.len().min(65_536)];
    let end = window.iter().position(|&b| b == b'\r')?;
    (bytes.get(end + 1) == Some(&b'\n')).then_some(end)
}

/// Where `*<digits>\r\n$` starts in `bytes`, at its beginning or after a
/// `\n`.
fn find_command_start(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&i| {
        (i == 0 || bytes[i - 1] == b'\n') && bytes[i] == b'*' && {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            digits > 0 && bytes[i + 1 + digits..].starts_with(b"\r\n$")
        }
    })
}

enum Fault {
    Incomplete,
    Framing,
}

/// What a cursor reads: the stream's segments, or one syscall's bytes where
/// they lie.
#[derive(Clone, Copy)]
enum Source<'a> {
    Owned(&'a VecDeque<Segment>),
    Slice(&'a [u8]),
}

enum Piece<'a> {
    Data(&'a [u8]),
    Hole(usize),
}

impl<'a> Source<'a> {
    fn get(self, index: usize) -> Option<Piece<'a>> {
        match self {
            Source::Owned(segments) => segments.get(index).map(|segment| match segment {
                Segment::Data(data, _) => Piece::Data(data),
                Segment::Hole(n) => Piece::Hole(*n),
            }),
            Source::Slice(data) => (index == 0).then_some(Piece::Data(data)),
        }
    }
}

/// A read position over the segments, never consuming them. The data
/// segment being read is kept at hand (`current`): most values lie whole in
/// one, and reading them then takes no look into the queue per byte.
struct Cursor<'a> {
    source: Source<'a>,
    index: usize,
    offset: usize,
    /// The bytes of segment `index` when it is a data segment, else empty.
    current: &'a [u8],
    /// Hole bytes passed inside bulk payloads.
    skipped: u64,
    /// Bytes kept of each bulk string.
    keep: usize,
}

impl<'a> Cursor<'a> {
    fn new(source: Source<'a>, keep: usize) -> Self {
        let mut cursor = Cursor {
            source,
            index: 0,
            offset: 0,
            current: &[],
            skipped: 0,
            keep: keep.min(KEEP),
        };
        cursor.at(0);
        if let Source::Owned(segments) = source
            && let Some(Segment::Data(_, start)) = segments.front()
        {
            cursor.offset = *start;
        }
        cursor
    }

    /// Moves to the start of segment `index`.
    fn at(&mut self, index: usize) {
        self.index = index;
        self.offset = 0;
        self.current = match self.source.get(index) {
            Some(Piece::Data(data)) => data,
            _ => &[],
        };
    }

    /// The bytes left in the data segment being read (empty in a hole).
    fn rest(&self) -> &'a [u8] {
        self.current.get(self.offset..).unwrap_or_default()
    }

    fn byte(&mut self) -> Result<u8, Fault> {
        if let Some(&b) = self.current.get(self.offset) {
            self.offset += 1;
            return Ok(b);
        }
        loop {
            match self.source.get(self.index) {
                None => return Err(Fault::Incomplete),
                Some(Piece::Hole(_)) => return Err(Fault::Framing),
                Some(Piece::Data(data)) => {
                    if let Some(&b) = data.get(self.offset) {
                        self.offset += 1;
                        return Ok(b);
                    }
                    self.at(self.index + 1);
                }
            }
        }
    }

    /// A line up to `\r\n` (excluded), its first `keep` bytes kept;
    /// framing error past 64 KiB.
    fn line(&mut self, keep: usize) -> Result<Text, Fault> {
        // Whole in this segment: one search, no copy beyond what is kept.
        let rest = self.rest();
        if let Some(end) = line_end(rest) {
            self.offset += end + 2;
            return Ok(Text::new(&rest[..end.min(keep)]));
        }
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\r' => {
                    if self.byte()? != b'\n' {
                        return Err(Fault::Framing);
                    }
                    line.truncate(keep);
                    return Ok(Text::new(&line));
                }
                b => {
                    line.push(b);
                    if line.len() > 65_536 {
                        return Err(Fault::Framing);
                    }
                }
            }
        }
    }

    /// A decimal line (`-1`, `42`), read without allocating: every length
    /// header of every request goes through here.
    fn number(&mut self) -> Result<i64, Fault> {
        if let Some((value, used)) = number_in(self.rest()) {
            self.offset += used;
            return Ok(value);
        }
        let mut value: i64 = 0;
        let mut negative = false;
        let mut digits = 0;
        loop {
            match self.byte()? {
                b'-' if digits == 0 && !negative => negative = true,
                b @ b'0'..=b'9' => {
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(i64::from(b - b'0')))
                        .ok_or(Fault::Framing)?;
                    digits += 1;
                }
                b'\r' if digits > 0 => {
                    if self.byte()? != b'\n' {
                        return Err(Fault::Framing);
                    }
                    return Ok(if negative { -value } else { value });
                }
                _ => return Err(Fault::Framing),
            }
        }
    }

    /// The `\r\n` after a bulk payload; it may fall in the same hole.
    fn crlf(&mut self) -> Result<(), Fault> {
        if self.rest().starts_with(b"\r\n") {
            self.offset += 2;
            return Ok(());
        }
        for expected in [b'\r', b'\n'] {
            // Past the end of a data segment, look at the next one.
            while let Some(Piece::Data(data)) = self.source.get(self.index) {
                if self.offset < data.len() {
                    break;
                }
                self.at(self.index + 1);
            }
            match self.source.get(self.index) {
                Some(Piece::Hole(_)) => {
                    self.bulk(1, 0)?;
                }
                _ => {
                    if self.byte()? != expected {
                        return Err(Fault::Framing);
                    }
                }
            }
        }
        Ok(())
    }

    /// `n` bytes, keeping the first `keep`, through holes.
    fn bulk(&mut self, mut n: usize, keep: usize) -> Result<Text, Fault> {
        let rest = self.rest();
        if rest.len() >= n {
            self.offset += n;
            return Ok(Text::new(&rest[..n.min(keep)]));
        }
        let mut kept = Vec::with_capacity(n.min(keep));
        while n > 0 {
            match self.source.get(self.index) {
                None => return Err(Fault::Incomplete),
                Some(Piece::Hole(len)) => {
                    let available = len - self.offset;
                    let take = available.min(n);
                    n -= take;
                    self.offset += take;
                    self.skipped += take as u64;
                    if self.offset == len {
                        self.at(self.index + 1);
                    }
                }
                Some(Piece::Data(data)) => {
                    let available = data.len() - self.offset;
                    if available == 0 {
                        self.at(self.index + 1);
                        continue;
                    }
                    let take = available.min(n);
                    let room = keep.saturating_sub(kept.len()).min(take);
                    kept.extend_from_slice(&data[self.offset..self.offset + room]);
                    n -= take;
                    self.offset += take;
                }
            }
        }
        Ok(Text::new(&kept))
    }
}

/// A decimal line whole at the start of `bytes`: its value and the bytes it
/// took, `\r\n` included; `None` when it is not whole there or not a
/// number (the byte-wise reader then decides which). Every length header
/// of every request and reply goes through here: one pass over the digits.
fn number_in(bytes: &[u8]) -> Option<(i64, usize)> {
    // One or two digits: the count and lengths of nearly every command.
    match bytes {
        [a @ b'0'..=b'9', b'\r', b'\n', ..] => return Some((i64::from(a - b'0'), 3)),
        [a @ b'0'..=b'9', b @ b'0'..=b'9', b'\r', b'\n', ..] => {
            return Some((i64::from((a - b'0') * 10 + (b - b'0')), 4));
        }
        _ => {}
    }
    let negative = bytes.first() == Some(&b'-');
    let start = usize::from(negative);
    let mut value: i64 = 0;
    let mut at = start;
    // 18 digits at most: no overflow.
    while let Some(&b) = bytes
        .get(at)
        .filter(|b| b.is_ascii_digit() && at - start < 18)
    {
        value = value * 10 + i64::from(b - b'0');
        at += 1;
    }
    if at == start || bytes.get(at..at + 2) != Some(b"\r\n") {
        return None;
    }
    Some((if negative { -value } else { value }, at + 2))
}

fn parse(cursor: &mut Cursor<'_>, depth: usize) -> Result<Value, Fault> {
    if depth > MAX_DEPTH {
        return Err(Fault::Framing);
    }
    let kind = cursor.byte()?;
    match kind {
        b'+' | b'(' | b',' | b'#' => Ok(Value::Simple(cursor.line(KEEP)?)),
        b'-' => {
            let line = cursor.line(KEEP)?;
            Ok(Value::Error(
                String::from_utf8_lossy(line.as_slice()).into_owned(),
            ))
        }
        b':' => Ok(Value::Integer(cursor.number()?)),
        b'_' => {
            cursor.line(0)?;
            Ok(Value::Nil)
        }
        b'$' | b'=' | b'!' => {
            let len = cursor.number()?;
            if len < 0 {
                return Ok(Value::Nil);
            }
            let len = len as usize;
            // Errors and verbatim strings are kept as they would be read.
            let keep = if kind == b'$' { cursor.keep } else { KEEP };
            let body = cursor.bulk(len, keep)?;
            cursor.crlf()?;
            match kind {
                b'!' => Ok(Value::Error(
                    String::from_utf8_lossy(body.as_slice()).into_owned(),
                )),
                // Verbatim strings carry a `txt:` prefix.
                b'=' => Ok(Value::Simple(Text::new(
                    body.as_slice().get(4..).unwrap_or_default(),
                ))),
                _ => Ok(Value::Bulk { len, head: body }),
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = cursor.number()?;
            if count < 0 {
                return Ok(Value::Nil);
            }
            if count > MAX_ELEMENTS {
                return Err(Fault::Framing);
            }
            let elements = if kind == b'%' || kind == b'|' {
                count * 2
            } else {
                count
            };
            // A push's channels and kinds are always kept.
            let keep = cursor.keep;
            if kind == b'>' {
                cursor.keep = KEEP;
            }
            let mut values = Vec::with_capacity((elements as usize).min(1024));
            for _ in 0..elements {
                values.push(parse(cursor, depth + 1)?);
            }
            cursor.keep = keep;
            match kind {
                b'>' => Ok(Value::Push(values)),
                // Attributes describe the value that follows; they are not
                // a reply of their own.
                b'|' => parse(cursor, depth),
                _ => Ok(Value::Array(values)),
            }
        }
        // An inline command: words separated by spaces, up to the line end.
        b if b.is_ascii_alphabetic() => {
            let mut line = vec![b];
            line.extend_from_slice(cursor.line(usize::MAX)?.as_slice());
            let words = line
                .split(|b| *b == b' ')
                .filter(|w| !w.is_empty())
                .map(Value::bulk)
                .collect();
            Ok(Value::Array(words))
        }
        _ => Err(Fault::Framing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_whole_in_place() {
        assert_eq!(number_in(b"0\r\n"), Some((0, 3)));
        assert_eq!(number_in(b"42\r\nx"), Some((42, 4)));
        assert_eq!(number_in(b"-1\r\n"), Some((-1, 4)));
        assert_eq!(
            number_in(b"999999999999999999\r\n"),
            Some((999_999_999_999_999_999, 20))
        );
        // Left to the byte-wise reader: too long, not whole, not a number.
        for bytes in [
            &b"1234567890123456789\r\n"[..],
            b"12",
            b"12\r",
            b"-\r\n",
            b"\r\n",
            b"1x\r\n",
            b"",
        ] {
            assert_eq!(number_in(bytes), None, "{bytes:?}");
        }
    }

    /// Every value the stream holds, bulk strings kept to [`KEEP`].
    fn all(stream: &mut Stream) -> Vec<Next> {
        let mut feed = stream.feed(&[], 0);
        let mut found = Vec::new();
        loop {
            match feed.next_value(KEEP) {
                Next::Incomplete => return found,
                next => found.push(next),
            }
        }
    }

    fn next(stream: &mut Stream) -> Next {
        stream.feed(&[], 0).next_value(KEEP)
    }

    fn bulk(s: &str) -> Value {
        Value::bulk(s.as_bytes())
    }

    #[test]
    fn commands_in_pieces_and_pipelines() {
        let mut s = Stream::requests();
        s.push(b"*2\r\n$3\r\nGET\r\n$3\r\nfo", 19);
        assert!(all(&mut s).is_empty());
        s.push(b"o\r\n*1\r\n$4\r\nPING\r\n", 17);
        assert_eq!(
            all(&mut s),
            vec![
                Next::Value(Value::Array(vec![bulk("GET"), bulk("foo")])),
                Next::Value(Value::Array(vec![bulk("PING")])),
            ]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn every_reply_type() {
        let mut s = Stream::replies();
        let bytes = b"+OK\r\n-WRONGTYPE Operation\r\n:42\r\n$-1\r\n$3\r\nbar\r\n*-1\r\n*2\r\n$1\r\na\r\n$-1\r\n_\r\n#t\r\n,1.5\r\n%1\r\n$1\r\nk\r\n:1\r\n~1\r\n:2\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n!8\r\nERR oops\r\n=7\r\ntxt:abc\r\n";
        s.push(bytes, bytes.len());
        let values: Vec<Value> = all(&mut s)
            .into_iter()
            .map(|n| match n {
                Next::Value(v) => v,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            values,
            vec![
                Value::simple(b"OK"),
                Value::Error("WRONGTYPE Operation".into()),
                Value::Integer(42),
                Value::Nil,
                bulk("bar"),
                Value::Nil,
                Value::Array(vec![bulk("a"), Value::Nil]),
                Value::Nil,
                Value::simple(b"t"),
                Value::simple(b"1.5"),
                Value::Array(vec![bulk("k"), Value::Integer(1)]),
                Value::Array(vec![Value::Integer(2)]),
                Value::Push(vec![bulk("message"), bulk("ch"), bulk("x")]),
                Value::Error("ERR oops".into()),
                Value::simple(b"abc"),
            ]
        );
    }

    #[test]
    fn a_hole_inside_a_bulk_payload_is_skipped() {
        let mut s = Stream::replies();
        // A 20,000-byte value of which the kernel copied the first 12 bytes.
        let head = b"$20000\r\nabcd";
        s.push(head, 8 + 20_000 + 2);
        s.push(b":1\r\n", 4);
        let found = all(&mut s);
        assert_eq!(found.len(), 2);
        match &found[0] {
            Next::Value(Value::Bulk { len, head }) => {
                assert_eq!((*len, &head.as_slice()[..4]), (20_000, &b"abcd"[..]))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(found[1], Next::Value(Value::Integer(1)));
    }

    #[test]
    fn a_hole_that_starts_right_after_the_payload() {
        let mut s = Stream::replies();
        s.push(b"$4\r\nabcd", 4 + 4 + 2);
        s.push(b":1\r\n", 4);
        assert_eq!(next(&mut s), Next::Value(bulk("abcd")));
        assert_eq!(next(&mut s), Next::Value(Value::Integer(1)));
    }

    #[test]
    fn bulk_strings_are_cut() {
        let mut s = Stream::replies();
        let value = "x".repeat(1000);
        let bytes = format!("$1000\r\n{value}\r\n");
        s.push(bytes.as_bytes(), bytes.len());
        match next(&mut s) {
            Next::Value(Value::Bulk { len, head }) => {
                assert_eq!((len, head.as_slice().len()), (1000, KEEP))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_resync_after_a_hole_in_the_framing() {
        let mut s = Stream::requests();
        // A hole where a length line should be: framing is lost.
        s.push(b"*3\r\n$3\r\nSET\r\n", 13 + 50);
        s.push(b"x\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 25);
        assert_eq!(next(&mut s), Next::Resync);
        assert_eq!(
            next(&mut s),
            Next::Value(Value::Array(vec![bulk("GET"), bulk("k")]))
        );
    }

    #[test]
    fn inline_commands() {
        let mut s = Stream::requests();
        s.push(b"PING\r\nSET a b\r\n", 15);
        assert_eq!(
            all(&mut s),
            vec![
                Next::Value(Value::Array(vec![bulk("PING")])),
                Next::Value(Value::Array(vec![bulk("SET"), bulk("a"), bulk("b")])),
            ]
        );
    }

    #[test]
    fn requests_read_in_place_are_the_values_the_parser_reads() {
        let long_key = "k".repeat(1000);
        let words: Vec<Vec<&str>> = vec![
            vec!["GET", "a"],
            vec!["SET", &long_key, "v", "EX", "10"],
            vec!["PING"],
            vec!["SET", "", ""],
        ];
        let mut bytes = Vec::new();
        for command in &words {
            bytes.extend(format!("*{}\r\n", command.len()).bytes());
            for w in command {
                bytes.extend(format!("${}\r\n{w}\r\n", w.len()).bytes());
            }
        }
        let (mut fast, mut general) = (Stream::requests(), Stream::requests());
        let mut fast = fast.feed(&bytes, 0);
        general.push(&bytes, bytes.len());
        for command in &words {
            let read: Vec<Vec<u8>> = fast
                .next_words(|w| w.iter().map(|w| w.to_vec()).collect())
                .expect("the common shape is read in place");
            assert_eq!(
                read,
                command
                    .iter()
                    .map(|w| w.as_bytes().to_vec())
                    .collect::<Vec<_>>()
            );
            let Next::Value(Value::Array(parsed)) = next(&mut general) else {
                panic!("the parser reads the same command");
            };
            assert_eq!(parsed.len(), read.len());
            for (parsed, read) in parsed.iter().zip(&read) {
                let parsed = parsed.as_bytes().unwrap();
                assert_eq!(parsed, &read[..read.len().min(KEEP)]);
            }
        }
        drop(fast);
        assert!(general.is_empty());
    }

    #[test]
    fn other_shapes_are_left_to_the_parser() {
        let seventeen = format!("*17\r\n{}", "$1\r\nx\r\n".repeat(17));
        for bytes in [
            &b"*2\r\n$3\r\nGET\r\n:1\r\n"[..],
            b"PING\r\n",
            b"*2\r\n$3\r\nGET\r\n$1\r\n",
            b"*2\r\n$3\r\nGET\r\n$-1\r\n",
            seventeen.as_bytes(),
        ] {
            let mut s = Stream::requests();
            let mut feed = s.feed(bytes, 0);
            assert!(
                feed.next_words(|_| ()).is_none(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            // Nothing was consumed: the parser sees the request whole.
            let whole = matches!(feed.next_value(KEEP), Next::Value(_));
            assert_eq!(whole, bytes != b"*2\r\n$3\r\nGET\r\n$1\r\n");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = Stream::replies();
        for chunk in [
            &b"*99999999999999\r\n"[..],
            b"$-5\r\n",
            b"\x00\xff\r\n",
            b"*2\r\n*2\r\n*2\r\n",
        ] {
            s.push(chunk, chunk.len() + 3);
            let _ = all(&mut s);
        }
    }

    #[test]
    fn bytes_read_in_place_keep_only_an_unfinished_end() {
        let mut s = Stream::replies();
        let mut feed = s.feed(b"+OK\r\n$5\r\nhel", 0);
        assert_eq!(feed.next_value(KEEP), Next::Value(Value::simple(b"OK")));
        assert_eq!(feed.next_value(KEEP), Next::Incomplete);
        drop(feed);
        assert!(!s.is_empty(), "the unfinished bulk string is kept");
        let mut feed = s.feed(b"lo\r\n:7\r\n", 0);
        assert_eq!(feed.next_value(KEEP), Next::Value(bulk("hello")));
        assert_eq!(feed.next_value(KEEP), Next::Value(Value::Integer(7)));
        assert_eq!(feed.next_value(KEEP), Next::Incomplete);
        drop(feed);
        assert!(s.is_empty());
    }

    #[test]
    fn bulk_strings_keep_their_length_and_as_many_bytes_as_asked() {
        let mut s = Stream::replies();
        let mut feed = s.feed(b"$10\r\n0123456789\r\n$0\r\n\r\n", 0);
        assert_eq!(
            feed.next_value(0),
            Next::Value(Value::Bulk {
                len: 10,
                head: Text::new(b"")
            })
        );
        assert_eq!(feed.next_value(3), Next::Value(bulk("")));
        // A push keeps its channel however little the reader keeps.
        let mut s = Stream::replies();
        let mut feed = s.feed(b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n", 0);
        assert_eq!(
            feed.next_value(0),
            Next::Value(Value::Push(vec![bulk("message"), bulk("news"), bulk("hi")]))
        );
    }

    #[test]
    fn a_framing_error_in_bytes_read_in_place_resyncs_as_in_the_stream() {
        let mut s = Stream::requests();
        let mut feed = s.feed(b"*2\r\n$3\r\nGET\r\n$x\r\n*1\r\n$4\r\nPING\r\n", 0);
        assert!(feed.next_words(|_| ()).is_none());
        assert_eq!(feed.next_value(KEEP), Next::Resync);
        assert_eq!(
            feed.next_value(KEEP),
            Next::Value(Value::Array(vec![bulk("PING")]))
        );
    }

    #[test]
    fn long_inline_commands_keep_every_word() {
        let mut s = Stream::requests();
        let line = format!("SET k {}\r\n", "v".repeat(300));
        let mut feed = s.feed(line.as_bytes(), 0);
        match feed.next_value(KEEP) {
            Next::Value(Value::Array(words)) => assert_eq!(words.len(), 3),
            other => panic!("{other:?}"),
        }
    }
}
