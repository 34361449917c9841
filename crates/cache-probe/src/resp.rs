//! RESP2 and RESP3, parsed from one direction of a connection as its bytes
//! arrive: in pieces, with holes where a syscall moved more bytes than the
//! kernel side copied.
//!
//! A hole inside a bulk string's payload costs nothing: its length is known,
//! so it is skipped. A hole anywhere else (in a type byte, a length line, an
//! integer) loses the framing: the stream reports a resync and, for
//! requests, drops bytes up to the next plausible start of a command array.
//! Values are kept small: bulk strings longer than [`KEEP`] bytes are cut
//! (the probe needs command names, keys and channel names, never values).
//!
//! Requests in the shape clients send them (an array of bulk strings) that
//! lie whole in one record are read in place by [`Stream::next_words`],
//! with no value built: that is nearly every command of a busy server.

use std::collections::VecDeque;

/// Bytes kept of each bulk string.
pub const KEEP: usize = 256;
/// Deepest nesting parsed (arrays of arrays of …); deeper is a framing error.
const MAX_DEPTH: usize = 8;
/// Most words of a request read by [`Stream::next_words`]; longer ones go
/// through the general parser.
const FAST_WORDS: usize = 16;
/// Most elements of one aggregate; more is taken for a framing error.
const MAX_ELEMENTS: i64 = 1 << 24;

/// A parsed value, with bulk strings cut to [`KEEP`] bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+`, and RESP3 verbatim strings, big numbers, doubles, booleans.
    Simple(Vec<u8>),
    /// `-` and RESP3 `!`: the error's message, cut to [`KEEP`] bytes; its
    /// first word is its code (`ERR`, `WRONGTYPE`, …, see [`error_code`]).
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// `$-1`, `*-1`, RESP3 `_`.
    Nil,
    /// `*`, RESP3 `~` (set) and `%` (map, flattened: key, value, …).
    Array(Vec<Value>),
    /// RESP3 `>`: out-of-band data, pub/sub messages.
    Push(Vec<Value>),
}

impl Value {
    /// Bulk or simple string contents.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::Simple(b) => Some(b),
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
    segments: VecDeque<Segment>,
    /// Framing was lost: drop bytes until a command array seems to start.
    lost: bool,
    /// Requests can resync on `*<n>\r\n$`; replies cannot.
    requests: bool,
    /// Bytes of holes passed inside bulk payloads, not yet reported.
    skipped: u64,
}

/// What [`Stream::next_value`] found.
#[derive(Debug, PartialEq)]
pub enum Next {
    Value(Value),
    /// Not enough bytes yet.
    Incomplete,
    /// Framing lost (and, for requests, found again further on).
    Resync,
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
        self.push_owned(captured.to_vec(), length);
    }

    /// [`Stream::push`], keeping `captured` rather than copying it.
    pub fn push_owned(&mut self, captured: Vec<u8>, length: usize) {
        let missed = length.saturating_sub(captured.len());
        if !captured.is_empty() {
            self.segments.push_back(Segment::Data(captured, 0));
        }
        if missed > 0 {
            self.segments.push_back(Segment::Hole(missed));
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

    /// The next complete value, if any.
    pub fn next_value(&mut self) -> Next {
        if self.lost {
            if !self.resync() {
                return Next::Incomplete;
            }
            self.lost = false;
        }
        let mut cursor = Cursor::new(&self.segments);
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

    /// The next request when it lies whole in the data at the front,
    /// framed as clients send commands (an array of at most [`FAST_WORDS`]
    /// bulk strings): its words go to `take`, borrowed, without a
    /// [`Value`] being built, and are consumed. `None` when it is not that;
    /// [`Stream::next_value`] then tells what it is (incomplete, another
    /// shape, a framing error).
    pub fn next_words<R>(&mut self, take: impl FnOnce(&[&[u8]]) -> R) -> Option<R> {
        if self.lost {
            return None;
        }
        let Some(Segment::Data(data, start)) = self.segments.front_mut() else {
            return None;
        };
        let bytes = &data[*start..];
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
        let taken = take(&words[..count]);
        *start += at;
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

/// A read position over the segments, never consuming them. The data
/// segment being read is kept at hand (`current`): most values lie whole in
/// one, and reading them then takes no look into the queue per byte.
struct Cursor<'a> {
    segments: &'a VecDeque<Segment>,
    index: usize,
    offset: usize,
    /// The bytes of segment `index` when it is a data segment, else empty.
    current: &'a [u8],
    /// Hole bytes passed inside bulk payloads.
    skipped: u64,
}

impl<'a> Cursor<'a> {
    fn new(segments: &'a VecDeque<Segment>) -> Self {
        let mut cursor = Cursor {
            segments,
            index: 0,
            offset: 0,
            current: &[],
            skipped: 0,
        };
        cursor.at(0);
        if let Some(Segment::Data(_, start)) = segments.front() {
            cursor.offset = *start;
        }
        cursor
    }

    /// Moves to the start of segment `index`.
    fn at(&mut self, index: usize) {
        self.index = index;
        self.offset = 0;
        self.current = match self.segments.get(index) {
            Some(Segment::Data(data, _)) => data,
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
            match self.segments.get(self.index) {
                None => return Err(Fault::Incomplete),
                Some(Segment::Hole(_)) => return Err(Fault::Framing),
                Some(Segment::Data(data, _)) => {
                    if let Some(&b) = data.get(self.offset) {
                        self.offset += 1;
                        return Ok(b);
                    }
                    self.at(self.index + 1);
                }
            }
        }
    }

    /// A line up to `\r\n` (excluded); framing error past 64 KiB.
    fn line(&mut self) -> Result<Vec<u8>, Fault> {
        // Whole in this segment: one search and one copy.
        let rest = self.rest();
        if let Some(end) = rest.iter().take(65_536).position(|&b| b == b'\r')
            && rest.get(end + 1) == Some(&b'\n')
        {
            self.offset += end + 2;
            return Ok(rest[..end].to_vec());
        }
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\r' => {
                    if self.byte()? != b'\n' {
                        return Err(Fault::Framing);
                    }
                    return Ok(line);
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
            while let Some(Segment::Data(data, _)) = self.segments.get(self.index) {
                if self.offset < data.len() {
                    break;
                }
                self.at(self.index + 1);
            }
            match self.segments.get(self.index) {
                Some(Segment::Hole(_)) => {
                    self.bulk(1)?;
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

    /// `n` bytes, keeping the first [`KEEP`], through holes.
    fn bulk(&mut self, mut n: usize) -> Result<Vec<u8>, Fault> {
        let rest = self.rest();
        if rest.len() >= n {
            self.offset += n;
            return Ok(rest[..n.min(KEEP)].to_vec());
        }
        let mut kept = Vec::with_capacity(n.min(KEEP));
        while n > 0 {
            match self.segments.get(self.index) {
                None => return Err(Fault::Incomplete),
                Some(Segment::Hole(len)) => {
                    let available = len - self.offset;
                    let take = available.min(n);
                    n -= take;
                    self.offset += take;
                    self.skipped += take as u64;
                    if self.offset == *len {
                        self.at(self.index + 1);
                    }
                }
                Some(Segment::Data(data, _)) => {
                    let available = data.len() - self.offset;
                    if available == 0 {
                        self.at(self.index + 1);
                        continue;
                    }
                    let take = available.min(n);
                    let room = KEEP.saturating_sub(kept.len()).min(take);
                    kept.extend_from_slice(&data[self.offset..self.offset + room]);
                    n -= take;
                    self.offset += take;
                }
            }
        }
        Ok(kept)
    }
}

/// A decimal line whole at the start of `bytes`: its value and the bytes it
/// took, `\r\n` included; `None` when it is not whole there or not a
/// number (the byte-wise reader then decides which).
fn number_in(bytes: &[u8]) -> Option<(i64, usize)> {
    let (negative, digits) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let mut value: i64 = 0;
    for (i, &b) in digits.iter().enumerate().take(18) {
        match b {
            b'0'..=b'9' => value = value * 10 + i64::from(b - b'0'),
            b'\r' if i > 0 && digits.get(i + 1) == Some(&b'\n') => {
                let used = i + 2 + usize::from(negative);
                return Some((if negative { -value } else { value }, used));
            }
            _ => return None,
        }
    }
    None
}

fn parse(cursor: &mut Cursor<'_>, depth: usize) -> Result<Value, Fault> {
    if depth > MAX_DEPTH {
        return Err(Fault::Framing);
    }
    let kind = cursor.byte()?;
    match kind {
        b'+' | b'(' | b',' | b'#' => Ok(Value::Simple(cursor.line()?)),
        b'-' => {
            let mut line = cursor.line()?;
            line.truncate(KEEP);
            Ok(Value::Error(String::from_utf8_lossy(&line).into_owned()))
        }
        b':' => Ok(Value::Integer(cursor.number()?)),
        b'_' => {
            cursor.line()?;
            Ok(Value::Nil)
        }
        b'$' | b'=' | b'!' => {
            let len = cursor.number()?;
            if len < 0 {
                return Ok(Value::Nil);
            }
            let body = cursor.bulk(len as usize)?;
            cursor.crlf()?;
            match kind {
                b'!' => Ok(Value::Error(String::from_utf8_lossy(&body).into_owned())),
                // Verbatim strings carry a `txt:` prefix.
                b'=' => Ok(Value::Simple(body.get(4..).unwrap_or_default().to_vec())),
                _ => Ok(Value::Bulk(body)),
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
            let mut values = Vec::with_capacity((elements as usize).min(1024));
            for _ in 0..elements {
                values.push(parse(cursor, depth + 1)?);
            }
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
            line.extend(cursor.line()?);
            let words = line
                .split(|b| *b == b' ')
                .filter(|w| !w.is_empty())
                .map(|w| Value::Bulk(w.to_vec()))
                .collect();
            Ok(Value::Array(words))
        }
        _ => Err(Fault::Framing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(stream: &mut Stream) -> Vec<Next> {
        let mut found = Vec::new();
        loop {
            match stream.next_value() {
                Next::Incomplete => return found,
                next => found.push(next),
            }
        }
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
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
                Value::Simple(b"OK".to_vec()),
                Value::Error("WRONGTYPE Operation".into()),
                Value::Integer(42),
                Value::Nil,
                bulk("bar"),
                Value::Nil,
                Value::Array(vec![bulk("a"), Value::Nil]),
                Value::Nil,
                Value::Simple(b"t".to_vec()),
                Value::Simple(b"1.5".to_vec()),
                Value::Array(vec![bulk("k"), Value::Integer(1)]),
                Value::Array(vec![Value::Integer(2)]),
                Value::Push(vec![bulk("message"), bulk("ch"), bulk("x")]),
                Value::Error("ERR oops".into()),
                Value::Simple(b"abc".to_vec()),
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
            Next::Value(Value::Bulk(kept)) => assert_eq!(&kept[..4], b"abcd"),
            other => panic!("{other:?}"),
        }
        assert_eq!(found[1], Next::Value(Value::Integer(1)));
    }

    #[test]
    fn a_hole_that_starts_right_after_the_payload() {
        let mut s = Stream::replies();
        s.push(b"$4\r\nabcd", 4 + 4 + 2);
        s.push(b":1\r\n", 4);
        assert_eq!(s.next_value(), Next::Value(bulk("abcd")));
        assert_eq!(s.next_value(), Next::Value(Value::Integer(1)));
    }

    #[test]
    fn bulk_strings_are_cut() {
        let mut s = Stream::replies();
        let value = "x".repeat(1000);
        let bytes = format!("$1000\r\n{value}\r\n");
        s.push(bytes.as_bytes(), bytes.len());
        match s.next_value() {
            Next::Value(Value::Bulk(kept)) => assert_eq!(kept.len(), KEEP),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_resync_after_a_hole_in_the_framing() {
        let mut s = Stream::requests();
        // A hole where a length line should be: framing is lost.
        s.push(b"*3\r\n$3\r\nSET\r\n", 13 + 50);
        s.push(b"x\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 25);
        assert_eq!(s.next_value(), Next::Resync);
        assert_eq!(
            s.next_value(),
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
        fast.push(&bytes, bytes.len());
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
            let Next::Value(Value::Array(parsed)) = general.next_value() else {
                panic!("the parser reads the same command");
            };
            assert_eq!(parsed.len(), read.len());
            for (parsed, read) in parsed.iter().zip(&read) {
                let parsed = parsed.as_bytes().unwrap();
                assert_eq!(parsed, &read[..read.len().min(KEEP)]);
            }
        }
        assert!(fast.is_empty() && general.is_empty());
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
            s.push(bytes, bytes.len());
            assert!(
                s.next_words(|_| ()).is_none(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            // Nothing was consumed: the parser sees the request whole.
            let whole = matches!(s.next_value(), Next::Value(_));
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
}
