//! The decompressed-bytes budget of one PDF extraction.
//!
//! lopdf inflates a stream whenever it is read, into memory, without a
//! bound. So before lopdf reads a stream, the stream is decoded here the way
//! lopdf would decode it (same filters, same fallbacks) into a writer that
//! stops at the budget, and its decoded size is charged against the budget:
//! - cross-reference streams, which lopdf inflates while it reads the file's
//!   structure, before any hook runs: found in the raw bytes first
//!   ([`charge_xref_streams`]);
//! - object streams, which lopdf expands while loading the document, from a
//!   load filter (a plain `fn`, hence the thread-local);
//! - every other stream once the document is loaded, before the text is
//!   extracted. Images (and embedded files) are emptied instead: their data
//!   is never text, and pdf-extract would otherwise inflate and parse an
//!   image that a page draws as if it were a content stream.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::{self, Read, Write};

use flate2::read::{DeflateDecoder, ZlibDecoder};
use pdf_extract::{Dictionary, Document, LoadOptions, Object, ObjectId, Stream};

use super::super::human_bytes;
use super::Failure;

/// Bytes one document's streams may still decode to.
#[derive(Debug)]
pub(super) struct Budget {
    cap: u64,
    used: u64,
    exceeded: bool,
}

thread_local! {
    /// The budget of the document being loaded on this thread, for
    /// [`load_filter`].
    static LOADING: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// Clears [`LOADING`] however the load ends (a parser panic included), so a
/// later load on this thread starts afresh.
struct Loading;

impl Drop for Loading {
    fn drop(&mut self) {
        LOADING.with(|l| l.borrow_mut().take());
    }
}

/// Parse `bytes`, charging the object streams lopdf expands while loading.
pub(super) fn load(bytes: &[u8], cap: u64) -> Result<(Document, Budget), Failure> {
    let mut budget = Budget::new(cap);
    if charge_xref_streams(bytes, &mut budget).is_err() {
        return Err(budget.failure());
    }
    let guard = Loading;
    LOADING.with(|l| *l.borrow_mut() = Some(budget));
    let options = LoadOptions {
        filter: Some(load_filter),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options);
    let budget = LOADING
        .with(|l| l.borrow_mut().take())
        .unwrap_or_else(|| Budget::new(cap));
    drop(guard);
    if budget.exceeded {
        return Err(budget.failure());
    }
    let doc = doc.map_err(|e| Failure::Malformed(format!("the PDF could not be parsed: {e}")))?;
    Ok((doc, budget))
}

/// Runs on every object lopdf reads from the file, before it expands an
/// object stream. Its return value is only looked at for the objects inside
/// object streams (never streams themselves), so a stream is changed in place
/// and not copied.
fn load_filter(id: ObjectId, object: &mut Object) -> Option<(ObjectId, Object)> {
    let Object::Stream(stream) = object else {
        return Some((id, object.clone()));
    };
    if stream.dict.has_type(b"ObjStm") {
        LOADING.with(|l| {
            if let Some(budget) = l.borrow_mut().as_mut() {
                if budget.charge(stream).is_err() {
                    // Not expanded: the load fails on the exceeded budget.
                    stream.set_plain_content(Vec::new());
                }
            }
        });
    }
    Some((id, Object::Null))
}

/// Charge every cross-reference stream in `bytes`: each object whose
/// dictionary says `/XRef` and is followed by stream data. Found by
/// scanning, not parsing (lopdf's parser is not public), so it errs towards
/// charging: a stray `/XRef` in some other stream's dictionary is charged
/// too, which costs only budget.
fn charge_xref_streams(bytes: &[u8], budget: &mut Budget) -> Result<(), Exceeded> {
    const WINDOW: usize = 64 * 1024;
    let mut from = 0;
    while let Some(at) = find(bytes, b"/XRef", from) {
        from = at + 5;
        // `/XRefStm` (a trailer key) is not a type.
        if bytes.get(from).is_some_and(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let horizon = bytes.len().min(from + WINDOW);
        let Some(keyword) = find(&bytes[..horizon], b"stream", from) else {
            continue;
        };
        if find(&bytes[..keyword], b"endobj", from).is_some() {
            continue;
        }
        let dict_start = rfind(&bytes[at.saturating_sub(WINDOW)..at], b"obj")
            .map_or(at.saturating_sub(WINDOW), |i| at.saturating_sub(WINDOW) + i);
        let dict = &bytes[dict_start..keyword];
        let mut data = keyword + b"stream".len();
        if bytes.get(data) == Some(&b'\r') {
            data += 1;
        }
        if bytes.get(data) == Some(&b'\n') {
            data += 1;
        }
        let end = find(bytes, b"endstream", data).unwrap_or(bytes.len());
        let stream = Stream::new(raw_stream_dict(dict), bytes[data..end].to_vec());
        budget.charge(&stream)?;
    }
    Ok(())
}

/// The keys of a raw stream dictionary that decide what decoding costs:
/// `/Filter` (a name or an array of names) and the predictor's integers.
fn raw_stream_dict(raw: &[u8]) -> Dictionary {
    let is_delimiter = |b: u8| b.is_ascii_whitespace() || b"/[]<>()%".contains(&b);
    let name_at = |at: usize| -> (Vec<u8>, usize) {
        let end = raw[at..]
            .iter()
            .position(|&b| is_delimiter(b))
            .map_or(raw.len(), |n| at + n);
        (raw[at..end].to_vec(), end)
    };
    let skip_space = |mut at: usize| {
        while raw.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
        at
    };
    let mut dict = Dictionary::new();
    if let Some(key) = find(raw, b"/Filter", 0) {
        let at = skip_space(key + b"/Filter".len());
        match raw.get(at) {
            Some(b'/') => {
                let (name, _) = name_at(at + 1);
                dict.set("Filter", Object::Name(name));
            }
            Some(b'[') => {
                let mut names = Vec::new();
                let mut at = skip_space(at + 1);
                while raw.get(at) == Some(&b'/') {
                    let (name, end) = name_at(at + 1);
                    names.push(Object::Name(name));
                    at = skip_space(end);
                }
                dict.set("Filter", Object::Array(names));
            }
            _ => {}
        }
    }
    let mut params = Dictionary::new();
    for key in ["Predictor", "Columns", "Colors", "BitsPerComponent"] {
        let Some(at) = find(raw, format!("/{key}").as_bytes(), 0) else {
            continue;
        };
        let at = skip_space(at + key.len() + 1);
        let digits: String = raw[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        if let Ok(n) = digits.parse::<i64>() {
            params.set(key, n);
        }
    }
    if !params.is_empty() {
        dict.set("DecodeParms", params);
    }
    dict
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The budget is spent.
#[derive(Debug)]
pub(super) struct Exceeded;

impl Budget {
    pub(super) fn new(cap: u64) -> Self {
        Budget {
            cap,
            used: 0,
            exceeded: false,
        }
    }

    fn failure(&self) -> Failure {
        Failure::Limit(format!(
            "its streams decompress to more than {}",
            human_bytes(self.cap)
        ))
    }

    /// Charge what lopdf would allocate to decode `stream`; once the budget is
    /// spent, every later stream is refused too.
    fn charge(&mut self, stream: &Stream) -> Result<(), Exceeded> {
        if self.exceeded {
            return Err(Exceeded);
        }
        match decoded_cost(stream, self.cap - self.used) {
            Ok(cost) => {
                self.used += cost;
                Ok(())
            }
            Err(e) => {
                self.exceeded = true;
                Err(e)
            }
        }
    }

    /// Charge every stream of the loaded document (object streams were
    /// charged while loading, and are no longer compressed); empty images
    /// and embedded files.
    pub(super) fn charge_document(&mut self, doc: &mut Document) -> Result<(), Failure> {
        for object in doc.objects.values_mut() {
            let Object::Stream(stream) = object else {
                continue;
            };
            if is_never_text(&stream.dict) {
                stream.set_plain_content(Vec::new());
                continue;
            }
            if self.charge(stream).is_err() {
                return Err(self.failure());
            }
        }
        Ok(())
    }
}

fn is_never_text(dict: &Dictionary) -> bool {
    let name = |key: &[u8]| dict.get(key).and_then(Object::as_name).ok();
    name(b"Subtype") == Some(b"Image") || name(b"Type") == Some(b"EmbeddedFile")
}

/// The failure for text output past `cap`.
pub(super) fn text_limit(cap: u64) -> Failure {
    Failure::Limit(format!("its text is longer than {}", human_bytes(cap)))
}

/// Bytes lopdf allocates to decode `stream` (`Stream::decompressed_content`):
/// each filter's output in turn, and a predictor's two row buffers. Stops
/// as soon as that passes `cap`.
pub(super) fn decoded_cost(stream: &Stream, cap: u64) -> Result<u64, Exceeded> {
    let Ok(filters) = stream.filters() else {
        // Not compressed: lopdf hands out the bytes it already holds.
        return Ok(0);
    };
    let params = stream
        .dict
        .get(b"DecodeParms")
        .and_then(Object::as_dict)
        .ok();
    let mut cost: u64 = 0;
    let mut input: Cow<'_, [u8]> = Cow::Borrowed(&stream.content);
    let last = filters.len().saturating_sub(1);
    for (i, filter) in filters.iter().enumerate() {
        // The last stage's output is only counted, not kept.
        let mut out = CappedWriter::counting(cap - cost, i < last);
        let decoded = match *filter {
            b"FlateDecode" => inflate(&input, &mut out),
            b"LZWDecode" => unlzw(&input, params, &mut out),
            // At most 4 bytes out per byte in: cannot amplify, so lopdf's own
            // decoder is safe to run.
            b"ASCII85Decode" => ascii85(&input, &mut out),
            // lopdf gives up on any other filter, having decoded nothing more.
            _ => break,
        };
        if decoded.is_err() || out.exceeded {
            return Err(Exceeded);
        }
        cost += out.len;
        if *filter != b"ASCII85Decode" {
            cost = cost.saturating_add(predictor_cost(params));
        }
        if cost > cap {
            return Err(Exceeded);
        }
        input = Cow::Owned(out.into_inner());
    }
    Ok(cost)
}

/// lopdf's `decompress_zlib`: zlib, and when that yields nothing, raw
/// deflate after the two-byte header (for streams with a broken checksum).
/// Output up to a decoding error is kept, as lopdf keeps it.
fn inflate(input: &[u8], out: &mut CappedWriter) -> Result<(), Exceeded> {
    if input.is_empty() {
        return Ok(());
    }
    let zlib = io::copy(&mut ZlibDecoder::new(input), out);
    if out.exceeded {
        return Err(Exceeded);
    }
    if zlib.is_err() && out.len == 0 && input.len() > 2 {
        let _ = io::copy(&mut DeflateDecoder::new(&input[2..]), out);
        if out.exceeded {
            return Err(Exceeded);
        }
    }
    Ok(())
}

/// lopdf's `decompress_lzw`: LZW codes of up to 12 bits each expand to
/// thousands of bytes, so this is a bomb as well as deflate is.
fn unlzw(
    input: &[u8],
    params: Option<&Dictionary>,
    out: &mut CappedWriter,
) -> Result<(), Exceeded> {
    use weezl::{decode::Decoder, BitOrder};
    let early_change = params
        .and_then(|p| p.get(b"EarlyChange").ok())
        .and_then(|p| p.as_i64().ok())
        .map(|v| v != 0)
        .unwrap_or(true);
    let mut decoder = if early_change {
        Decoder::with_tiff_size_switch(BitOrder::Msb, 8)
    } else {
        Decoder::new(BitOrder::Msb, 8)
    };
    // Like lopdf, a decoding error ends the output there.
    let _ = decoder.into_stream(&mut *out).decode_all(input).status;
    if out.exceeded {
        return Err(Exceeded);
    }
    Ok(())
}

fn ascii85(input: &[u8], out: &mut CappedWriter) -> Result<(), Exceeded> {
    let mut dict = Dictionary::new();
    dict.set("Filter", "ASCII85Decode");
    let decoded = Stream::new(dict, input.to_vec())
        .decompressed_content()
        .unwrap_or_default();
    out.write_all(&decoded).map_err(|_| Exceeded)
}

/// The two row buffers lopdf's PNG predictor allocates, sized from the
/// stream's own parameters (so a tiny stream can ask for gigabytes).
fn predictor_cost(params: Option<&Dictionary>) -> u64 {
    let Some(params) = params else { return 0 };
    let int =
        |key: &[u8], default: i64| params.get(key).and_then(Object::as_i64).unwrap_or(default);
    if !(10..=15).contains(&int(b"Predictor", 1)) {
        return 0;
    }
    let columns = int(b"Columns", 1).max(1) as u64;
    let colors = int(b"Colors", 1).max(1) as u64;
    let bits = int(b"BitsPerComponent", 8).max(8) as u64;
    colors
        .saturating_mul(bits)
        .saturating_div(8)
        .saturating_mul(columns)
        .saturating_mul(2)
}

/// A writer that fails once more than `cap` bytes were written to it, and
/// keeps them only when asked to.
pub(super) struct CappedWriter {
    cap: u64,
    len: u64,
    kept: Option<Vec<u8>>,
    exceeded: bool,
}

impl CappedWriter {
    /// Keeps what is written.
    pub(super) fn new(cap: u64) -> Self {
        Self::counting(cap, true)
    }

    fn counting(cap: u64, keep: bool) -> Self {
        CappedWriter {
            cap,
            len: 0,
            kept: keep.then(Vec::new),
            exceeded: false,
        }
    }

    pub(super) fn exceeded(&self) -> bool {
        self.exceeded
    }

    pub(super) fn into_inner(self) -> Vec<u8> {
        self.kept.unwrap_or_default()
    }
}

impl Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.cap - self.len;
        if buf.len() as u64 > room {
            self.exceeded = true;
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "decompression limit reached",
            ));
        }
        if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(buf);
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads at most `cap` bytes of `reader` and says whether there was more.
pub(super) fn read_capped(reader: impl Read, cap: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut out)?;
    let more = out.len() as u64 > cap;
    out.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    Ok((out, more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::ZlibEncoder;
    use flate2::Compression;

    pub(crate) fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn stream(filter: Object, content: Vec<u8>) -> Stream {
        let mut dict = Dictionary::new();
        dict.set("Filter", filter);
        Stream::new(dict, content)
    }

    #[test]
    fn flate_is_counted_and_stopped_at_the_cap() {
        let s = stream(Object::Name(b"FlateDecode".to_vec()), zlib(&[0; 10_000]));
        assert_eq!(decoded_cost(&s, 10_000).unwrap(), 10_000);
        assert!(decoded_cost(&s, 9_999).is_err());
        // The same as lopdf decodes.
        assert_eq!(s.decompressed_content().unwrap().len(), 10_000);
    }

    #[test]
    fn a_double_deflate_chain_is_counted_at_every_stage() {
        let inner = zlib(&[0; 100_000]);
        let outer = zlib(&inner);
        let chain = Object::Array(vec![
            Object::Name(b"FlateDecode".to_vec()),
            Object::Name(b"FlateDecode".to_vec()),
        ]);
        let s = stream(chain, outer);
        let cost = decoded_cost(&s, u64::MAX / 2).unwrap();
        assert_eq!(cost, inner.len() as u64 + 100_000);
        assert!(decoded_cost(&s, 100_000).is_err());
    }

    #[test]
    fn lzw_is_a_bomb_too() {
        let mut encoded = Vec::new();
        weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .into_stream(&mut encoded)
            .encode_all(&[b'a'; 1_000_000][..])
            .status
            .unwrap();
        assert!(encoded.len() < 20_000, "{}", encoded.len());
        let s = stream(Object::Name(b"LZWDecode".to_vec()), encoded);
        assert_eq!(decoded_cost(&s, 2_000_000).unwrap(), 1_000_000);
        assert!(decoded_cost(&s, 999_999).is_err());
    }

    #[test]
    fn a_predictor_asking_for_huge_rows_is_charged() {
        let mut s = stream(Object::Name(b"FlateDecode".to_vec()), zlib(b"x"));
        let mut params = Dictionary::new();
        params.set("Predictor", 12_i64);
        params.set("Columns", 1_000_000_000_i64);
        s.dict.set("DecodeParms", params);
        assert!(decoded_cost(&s, 256 << 20).is_err());
    }

    #[test]
    fn unknown_filters_and_plain_streams_cost_nothing() {
        let s = stream(Object::Name(b"DCTDecode".to_vec()), vec![1; 1000]);
        assert_eq!(decoded_cost(&s, 10).unwrap(), 0);
        let s = Stream::new(Dictionary::new(), vec![1; 1000]);
        assert_eq!(decoded_cost(&s, 10).unwrap(), 0);
    }

    #[test]
    fn a_spent_budget_refuses_every_later_stream() {
        let mut budget = Budget::new(15_000);
        let s = stream(Object::Name(b"FlateDecode".to_vec()), zlib(&[0; 10_000]));
        assert!(budget.charge(&s).is_ok());
        assert!(budget.charge(&s).is_err());
        let tiny = stream(Object::Name(b"FlateDecode".to_vec()), zlib(b"x"));
        assert!(budget.charge(&tiny).is_err());
    }

    #[test]
    fn raw_xref_stream_dictionaries_are_read_for_their_decoding_keys() {
        let d = raw_stream_dict(
            b"<< /Type /XRef /Filter [ /FlateDecode/LZWDecode ] /DecodeParms \
              << /Predictor 12 /Columns 5 >> /W [1 2 1] >>",
        );
        let s = Stream::new(d, Vec::new());
        assert_eq!(s.filters().unwrap(), [&b"FlateDecode"[..], b"LZWDecode"]);
        let params = s.dict.get(b"DecodeParms").unwrap().as_dict().unwrap();
        assert_eq!(params.get(b"Columns").unwrap().as_i64().unwrap(), 5);
        let d = raw_stream_dict(b"<</Type/XRef/Filter/FlateDecode/Length 9>>");
        assert_eq!(
            Stream::new(d, Vec::new()).filters().unwrap(),
            [&b"FlateDecode"[..]]
        );
    }

    #[test]
    fn an_xref_stream_bomb_is_charged_before_lopdf_reads_it() {
        let mut pdf = b"%PDF-1.5\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
        pdf.extend_from_slice(
            b"2 0 obj\n<< /Type /XRef /Size 3 /W [1 2 1] /Filter /FlateDecode >>\nstream\n",
        );
        pdf.extend_from_slice(&zlib(&[0; 100_000]));
        pdf.extend_from_slice(b"\nendstream\nendobj\ntrailer << /XRefStm 40 >>\n");
        let mut budget = Budget::new(99_999);
        assert!(charge_xref_streams(&pdf, &mut budget).is_err());
        let mut budget = Budget::new(100_000);
        assert!(charge_xref_streams(&pdf, &mut budget).is_ok());
        assert_eq!(budget.used, 100_000);
    }

    #[test]
    fn capped_reads_say_whether_there_was_more() {
        let (bytes, more) = read_capped(&b"abcdef"[..], 4).unwrap();
        assert_eq!((bytes.as_slice(), more), (&b"abcd"[..], true));
        let (bytes, more) = read_capped(&b"abcd"[..], 4).unwrap();
        assert_eq!((bytes.as_slice(), more), (&b"abcd"[..], false));
    }
}
