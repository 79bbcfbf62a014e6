//! Parser for the canonical text form (see `text/mod.rs` for the syntax).

use super::QUANT_KEY_PREFIX;
use crate::error::{Error, Result};
use crate::ir::tensor::{dtype_from_name, dtype_name, dtype_size, Tensor, PLACEHOLDER_KEY, PLACEHOLDER_ZEROS_KEY};
use crate::ir::Model;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_shape_proto::dimension::Value as DV;
use crate::proto::*;
use bytes::Bytes;
use prost::Message;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    P(&'static str),
    Eof,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<(Tok, usize)>,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '+')
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0, peeked: None }
    }
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let before = &self.src[..pos.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (line, col)
    }
    fn err(&self, msg: impl Into<String>) -> Error {
        let at = self.peeked.as_ref().map(|p| p.1).unwrap_or(self.pos);
        let (l, c) = self.line_col(at);
        Error::user(format!("line {l}, column {c}: {}", msg.into()))
    }
    fn skip_ws(&mut self) {
        let b = self.src.as_bytes();
        while self.pos < b.len() {
            let c = b[self.pos];
            if c == b'#' {
                while self.pos < b.len() && b[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
    fn lex(&mut self) -> Result<(Tok, usize)> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.src[self.pos..];
        let Some(c) = rest.chars().next() else { return Ok((Tok::Eof, start)) };
        if rest.starts_with("=>") {
            self.pos += 2;
            return Ok((Tok::P("=>"), start));
        }
        let punct = match c {
            '<' => Some("<"),
            '>' => Some(">"),
            '(' => Some("("),
            ')' => Some(")"),
            '[' => Some("["),
            ']' => Some("]"),
            '{' => Some("{"),
            '}' => Some("}"),
            ',' => Some(","),
            '=' => Some("="),
            '@' => Some("@"),
            '?' => Some("?"),
            _ => None,
        };
        if let Some(p) = punct {
            self.pos += 1;
            return Ok((Tok::P(p), start));
        }
        if c == '"' {
            let mut out = String::new();
            let mut it = rest.char_indices().skip(1);
            while let Some((i, ch)) = it.next() {
                match ch {
                    '"' => {
                        self.pos += i + 1;
                        return Ok((Tok::Str(out), start));
                    }
                    '\\' => match it.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 't')) => out.push('\t'),
                        Some((_, 'r')) => out.push('\r'),
                        Some((_, '"')) => out.push('"'),
                        Some((_, '\\')) => out.push('\\'),
                        Some((_, 'u')) => {
                            let mut hexs = String::new();
                            if it.next().map(|x| x.1) != Some('{') {
                                return Err(self.err("bad \\u escape"));
                            }
                            for (_, h) in it.by_ref() {
                                if h == '}' {
                                    break;
                                }
                                hexs.push(h);
                            }
                            let v = u32::from_str_radix(&hexs, 16).ok().and_then(char::from_u32).ok_or_else(|| self.err("bad \\u escape"))?;
                            out.push(v);
                        }
                        _ => return Err(self.err("bad escape in string")),
                    },
                    ch => out.push(ch),
                }
            }
            return Err(self.err("unterminated string"));
        }
        if is_word_char(c) {
            let len = rest.find(|ch: char| !is_word_char(ch)).unwrap_or(rest.len());
            let w = &rest[..len];
            if w == ":" {
                self.pos += 1;
                return Ok((Tok::P(":"), start));
            }
            if w.len() > 1 && w.ends_with(':') {
                self.pos += len - 1;
                return Ok((Tok::Word(w[..len - 1].to_string()), start));
            }
            self.pos += len;
            return Ok((Tok::Word(w.to_string()), start));
        }
        Err(self.err(format!("unexpected character '{c}'")))
    }
    fn peek(&mut self) -> Result<&Tok> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        Ok(&self.peeked.as_ref().expect("just set").0)
    }
    fn next(&mut self) -> Result<Tok> {
        self.peek()?;
        Ok(self.peeked.take().expect("peeked").0)
    }
    fn expect(&mut self, p: &'static str) -> Result<()> {
        let t = self.next()?;
        if t != Tok::P(p) {
            return Err(self.err(format!("expected '{p}', found {}", show(&t))));
        }
        Ok(())
    }
    fn eat(&mut self, p: &'static str) -> Result<bool> {
        if *self.peek()? == Tok::P(p) {
            self.next()?;
            return Ok(true);
        }
        Ok(false)
    }
    fn word(&mut self) -> Result<String> {
        match self.next()? {
            Tok::Word(w) => Ok(w),
            t => Err(self.err(format!("expected a word, found {}", show(&t)))),
        }
    }
    fn string(&mut self) -> Result<String> {
        match self.next()? {
            Tok::Str(s) => Ok(s),
            t => Err(self.err(format!("expected a string, found {}", show(&t)))),
        }
    }
    /// A name: a bare word or a quoted string.
    fn name(&mut self) -> Result<String> {
        match self.next()? {
            Tok::Word(w) => Ok(w),
            Tok::Str(s) => Ok(s),
            t => Err(self.err(format!("expected a name, found {}", show(&t)))),
        }
    }
    /// The raw text up to the end of the current line (used by the quant block).
    fn rest_of_line(&mut self) -> String {
        let pos = match self.peeked.take() {
            Some((_, p)) => p,
            None => self.pos,
        };
        let rest = &self.src[pos..];
        let end = rest.find('\n').unwrap_or(rest.len());
        self.pos = pos + end;
        rest[..end].trim().to_string()
    }
    fn hex_bytes(&mut self) -> Result<Vec<u8>> {
        let s = self.string()?;
        unhex(&s).ok_or_else(|| self.err("bad hex string"))
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::P(p) => format!("'{p}'"),
        Tok::Eof => "end of input".into(),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn parse_int(l: &Lexer, w: &str) -> Result<i64> {
    w.parse::<i64>().map_err(|_| l.err(format!("expected an integer, found '{w}'")))
}

fn is_float_word(w: &str) -> bool {
    w.contains('.') || w.contains('e') || w.contains('E') || w.ends_with("inf") || w == "nan"
}

fn parse_f32(l: &Lexer, w: &str) -> Result<f32> {
    match w {
        "inf" => Ok(f32::INFINITY),
        "-inf" => Ok(f32::NEG_INFINITY),
        "nan" => Ok(f32::NAN),
        _ => w.parse::<f32>().map_err(|_| l.err(format!("expected a number, found '{w}'"))),
    }
}

/// Parses the text form into an IR model.
pub fn parse(src: &str) -> Result<Model> {
    crate::ir::import::import(parse_model_proto(src)?)
}

/// Parses the text form into a ModelProto.
pub fn parse_model_proto(src: &str) -> Result<ModelProto> {
    let mut l = Lexer::new(src);
    let mut m = ModelProto::default();
    l.expect("<")?;
    while !l.eat(">")? {
        let key = l.word()?;
        l.expect(":")?;
        match key.as_str() {
            "ir_version" => {
                let w = l.word()?;
                m.ir_version = Some(parse_int(&l, &w)?)
            }
            "model_version" => {
                let w = l.word()?;
                m.model_version = Some(parse_int(&l, &w)?)
            }
            "producer_name" => m.producer_name = Some(l.string()?),
            "producer_version" => m.producer_version = Some(l.string()?),
            "domain" => m.domain = Some(l.string()?),
            "doc_string" => m.doc_string = Some(l.string()?),
            "opset_import" => {
                l.expect("[")?;
                while !l.eat("]")? {
                    let d = l.string()?;
                    l.expect(":")?;
                    let w = l.word()?;
                    let v = parse_int(&l, &w)?;
                    m.opset_import.push(OperatorSetIdProto { domain: Some(d), version: Some(v) });
                    l.eat(",")?;
                }
            }
            "metadata_props" => m.metadata_props = parse_props(&mut l)?,
            "training_info" | "functions" | "configuration" => {
                l.expect("[")?;
                while !l.eat("]")? {
                    if l.word()? != "hex" {
                        return Err(l.err("expected hex"));
                    }
                    let b = l.hex_bytes()?;
                    let bad = |e: prost::DecodeError| Error::user(format!("bad {key} encoding: {e}"));
                    match key.as_str() {
                        "training_info" => m.training_info.push(TrainingInfoProto::decode(b.as_slice()).map_err(bad)?),
                        "functions" => m.functions.push(FunctionProto::decode(b.as_slice()).map_err(bad)?),
                        _ => m.configuration.push(DeviceConfigurationProto::decode(b.as_slice()).map_err(bad)?),
                    }
                    l.eat(",")?;
                }
            }
            other => return Err(l.err(format!("unknown model field '{other}'"))),
        }
        l.eat(",")?;
    }
    m.graph = Some(parse_graph(&mut l)?);
    if *l.peek()? != Tok::Eof {
        return Err(l.err("unexpected text after the graph"));
    }
    Ok(m)
}

fn parse_props(l: &mut Lexer) -> Result<Vec<StringStringEntryProto>> {
    let mut out = Vec::new();
    l.expect("[")?;
    while !l.eat("]")? {
        let k = l.string()?;
        l.expect(":")?;
        let v = l.string()?;
        out.push(StringStringEntryProto { key: Some(k), value: Some(v) });
        l.eat(",")?;
    }
    Ok(out)
}

/// `float[N,3]`, `float`, or `type hex "..."`, given the first word already read.
fn parse_type(l: &mut Lexer, first: &str) -> Result<TypeProto> {
    use crate::proto::tensor_shape_proto::Dimension;
    use crate::proto::type_proto::{Tensor as TT, Value as V};
    if first == "type" {
        if l.word()? != "hex" {
            return Err(l.err("expected 'hex' after 'type'"));
        }
        let b = l.hex_bytes()?;
        return TypeProto::decode(b.as_slice()).map_err(|e| l.err(format!("bad type encoding: {e}")));
    }
    let elem = dtype_from_name(first).ok_or_else(|| l.err(format!("unknown element type '{first}'")))?;
    let mut shape = None;
    if l.eat("[")? {
        let mut dims = Vec::new();
        while !l.eat("]")? {
            let d = match l.next()? {
                Tok::P("?") => Dimension { value: None, denotation: None },
                Tok::Word(w) if w.parse::<i64>().is_ok() => Dimension { value: Some(DV::DimValue(parse_int(l, &w)?)), denotation: None },
                Tok::Word(w) | Tok::Str(w) => Dimension { value: Some(DV::DimParam(w)), denotation: None },
                t => return Err(l.err(format!("bad dimension {}", show(&t)))),
            };
            dims.push(d);
            l.eat(",")?;
        }
        shape = Some(TensorShapeProto { dim: dims });
    }
    Ok(TypeProto { value: Some(V::TensorType(TT { elem_type: Some(elem), shape })), denotation: None })
}

fn parse_vdecl(l: &mut Lexer, first: &str) -> Result<ValueInfoProto> {
    let ty = parse_type(l, first)?;
    let name = l.name()?;
    let mut vi = ValueInfoProto { name: Some(name), r#type: Some(ty), ..Default::default() };
    if l.eat("@")? {
        if l.word()? != "hex" {
            return Err(l.err("expected 'hex' after '@'"));
        }
        let b = l.hex_bytes()?;
        let extra = ValueInfoProto::decode(b.as_slice()).map_err(|e| l.err(format!("bad value_info extra: {e}")))?;
        vi.doc_string = extra.doc_string;
        vi.metadata_props = extra.metadata_props;
    }
    Ok(vi)
}

/// Deterministic generator for test tensors (splitmix64 → uniform [-1, 1)).
/// Decodes the quoted string (the text form's escapes, as [`super::quote_str`] writes them)
/// at the start of `s`: the string and the number of bytes it took.
pub fn unquote_prefix(s: &str) -> Result<(String, usize)> {
    let mut l = Lexer::new(s);
    match l.lex()? {
        (Tok::Str(v), 0) => Ok((v, l.pos)),
        _ => Err(Error::user(format!("expected a quoted string at '{s}'"))),
    }
}

/// The most values a tensor generator (`{random: ..}`, `{fill: ..}`, `{arange: ..}`) makes:
/// generators are for hand-written test graphs, and a typo in a dim must not allocate terabytes.
pub const MAX_GENERATED: usize = 1 << 26;

pub(crate) fn random_values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Tensor value after its type: `[..]`, `{hash: .., zeros: ..}`, generators, or hex.
fn parse_tensor_value(l: &mut Lexer, name: &str, ty: &TypeProto) -> Result<TensorProto> {
    use crate::proto::type_proto::Value as V;
    let (elem, dims) = match &ty.value {
        Some(V::TensorType(tt)) => {
            let dims: Option<Vec<i64>> = tt
                .shape
                .as_ref()
                .map(|s| s.dim.iter().map(|d| if let Some(DV::DimValue(v)) = d.value { Some(v) } else { None }).collect())
                .unwrap_or(Some(vec![]));
            (tt.elem_type(), dims.ok_or_else(|| l.err(format!("tensor '{name}' needs static dims")))?)
        }
        _ => return Err(l.err(format!("tensor '{name}' needs a tensor type"))),
    };
    let numel = dims.iter().try_fold(1usize, |a, &d| if d < 0 { None } else { a.checked_mul(d as usize) });
    let numel = numel.ok_or_else(|| l.err(format!("tensor '{name}' has absurd dims {dims:?}")))?;
    let mk = |t: Tensor| {
        let mut p = t.proto;
        p.name = Some(name.to_string());
        p
    };
    match l.next()? {
        Tok::Word(w) if w == "hex" => {
            let b = l.hex_bytes()?;
            let mut t = TensorProto::decode(b.as_slice()).map_err(|e| l.err(format!("bad tensor encoding: {e}")))?;
            t.name = Some(name.to_string());
            Ok(t)
        }
        Tok::P("[") => {
            let mut words = Vec::new();
            while !l.eat("]")? {
                words.push(l.word()?);
                l.eat(",")?;
            }
            if words.len() != numel {
                return Err(l.err(format!("tensor '{name}' lists {} values but its dims {dims:?} need {numel}", words.len())));
            }
            if elem == 1 {
                let v = words.iter().map(|w| parse_f32(l, w)).collect::<Result<Vec<_>>>()?;
                Ok(mk(Tensor::from_f32(name, &dims, &v)))
            } else {
                // the printer inlines float and the integer/bool types only; any other element
                // type (double, float16, complex, ...) is written as hex
                if !matches!(elem, 2 | 3 | 4 | 5 | 6 | 7 | 9) {
                    return Err(l.err(format!(
                        "tensor '{name}': inline values are only for float, integer and bool tensors; write {} as hex",
                        dtype_name(elem)
                    )));
                }
                let v = words.iter().map(|w| parse_int(l, w)).collect::<Result<Vec<_>>>()?;
                let es = dtype_size(elem).ok_or_else(|| l.err("unsupported inline element type"))?;
                let (lo, hi) = match elem {
                    2 => (0, u8::MAX as i64),
                    3 => (i8::MIN as i64, i8::MAX as i64),
                    4 => (0, u16::MAX as i64),
                    5 => (i16::MIN as i64, i16::MAX as i64),
                    6 => (i32::MIN as i64, i32::MAX as i64),
                    9 => (0, 1),
                    _ => (i64::MIN, i64::MAX),
                };
                if let Some(x) = v.iter().find(|x| !(lo..=hi).contains(*x)) {
                    return Err(l.err(format!("tensor '{name}': value {x} does not fit {}", dtype_name(elem))));
                }
                let mut raw = Vec::with_capacity(numel * es);
                for x in v {
                    raw.extend_from_slice(&x.to_le_bytes()[..es]);
                }
                Ok(TensorProto {
                    name: Some(name.to_string()),
                    dims,
                    data_type: Some(elem),
                    raw_data: Some(Bytes::from(raw)),
                    ..Default::default()
                })
            }
        }
        Tok::P("{") => {
            let key = l.word()?;
            l.expect(":")?;
            let val = l.word()?;
            match key.as_str() {
                "hash" => {
                    l.expect(",")?;
                    if l.word()? != "zeros" {
                        return Err(l.err("expected 'zeros'"));
                    }
                    l.expect(":")?;
                    let z = l.word()?;
                    l.expect("}")?;
                    let kv = |k: &str, v: &str| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
                    Ok(TensorProto {
                        name: Some(name.to_string()),
                        dims,
                        data_type: Some(elem),
                        metadata_props: vec![kv(PLACEHOLDER_KEY, &val), kv(PLACEHOLDER_ZEROS_KEY, &z)],
                        ..Default::default()
                    })
                }
                "random" | "fill" | "arange" => {
                    l.expect("}")?;
                    if numel > MAX_GENERATED {
                        return Err(l.err(format!(
                            "generator '{key}' for tensor '{name}' of dims {dims:?}: {numel} values, over the limit of {MAX_GENERATED}"
                        )));
                    }
                    let v: Vec<f32> = match key.as_str() {
                        "random" => random_values(parse_int(l, &val)? as u64, numel),
                        "fill" => vec![parse_f32(l, &val)?; numel],
                        _ => {
                            let s = parse_f32(l, &val)?;
                            (0..numel).map(|i| s + i as f32).collect()
                        }
                    };
                    if elem != 1 {
                        return Err(l.err(format!("generator '{key}' makes float tensors only")));
                    }
                    Ok(mk(Tensor::from_f32(name, &dims, &v)))
                }
                k => Err(l.err(format!("unknown tensor generator '{k}' (use random, fill, arange or hash)"))),
            }
        }
        t => Err(l.err(format!("expected a tensor value, found {}", show(&t)))),
    }
}

fn parse_attr(l: &mut Lexer) -> Result<AttributeProto> {
    let name = l.name()?;
    let mut a = AttributeProto { name: Some(name.clone()), ..Default::default() };
    if l.eat(":")? {
        let ty = l.word()?;
        l.expect("=")?;
        if ty == "hex" {
            let b = l.hex_bytes()?;
            return AttributeProto::decode(b.as_slice()).map_err(|e| l.err(format!("bad attribute encoding: {e}")));
        }
        l.expect("[")?;
        l.expect("]")?;
        let t = match ty.as_str() {
            "ints" => AttributeType::Ints,
            "floats" => AttributeType::Floats,
            "strings" => AttributeType::Strings,
            _ => return Err(l.err(format!("unknown attribute type '{ty}'"))),
        };
        a.r#type = Some(t as i32);
        return Ok(a);
    }
    l.expect("=")?;
    match l.next()? {
        Tok::Str(s) => {
            a.s = Some(Bytes::from(s.into_bytes()));
            a.r#type = Some(AttributeType::String as i32);
        }
        Tok::Word(w) if w == "hex" => {
            a.s = Some(Bytes::from(l.hex_bytes()?));
            a.r#type = Some(AttributeType::String as i32);
        }
        Tok::Word(w) if w == "graph" => {
            a.g = Some(parse_graph(l)?);
            a.r#type = Some(AttributeType::Graph as i32);
        }
        Tok::Word(w) if dtype_from_name(&w).is_some() && w != "undefined" => {
            let ty = parse_type(l, &w)?;
            a.t = Some(parse_tensor_value(l, "", &ty)?);
            if let Some(t) = a.t.as_mut() {
                if t.name() == "" {
                    t.name = None;
                }
            }
            a.r#type = Some(AttributeType::Tensor as i32);
        }
        Tok::Word(w) => {
            if is_float_word(&w) {
                a.f = Some(parse_f32(l, &w)?);
                a.r#type = Some(AttributeType::Float as i32);
            } else {
                a.i = Some(parse_int(l, &w)?);
                a.r#type = Some(AttributeType::Int as i32);
            }
        }
        Tok::P("[") => {
            let mut words = Vec::new();
            let mut strings = Vec::new();
            while !l.eat("]")? {
                match l.next()? {
                    Tok::Word(w) if w == "hex" => strings.push(Bytes::from(l.hex_bytes()?)),
                    Tok::Word(w) => words.push(w),
                    Tok::Str(s) => strings.push(Bytes::from(s.into_bytes())),
                    t => return Err(l.err(format!("bad list element {}", show(&t)))),
                }
                l.eat(",")?;
            }
            if !strings.is_empty() {
                a.strings = strings;
                a.r#type = Some(AttributeType::Strings as i32);
            } else if words.iter().any(|w| is_float_word(w)) {
                a.floats = words.iter().map(|w| parse_f32(l, w)).collect::<Result<_>>()?;
                a.r#type = Some(AttributeType::Floats as i32);
            } else {
                a.ints = words.iter().map(|w| parse_int(l, w)).collect::<Result<_>>()?;
                a.r#type = Some(AttributeType::Ints as i32);
            }
        }
        t => return Err(l.err(format!("bad value for attribute '{name}': {}", show(&t)))),
    }
    Ok(a)
}

fn parse_graph(l: &mut Lexer) -> Result<GraphProto> {
    let mut g = GraphProto { name: Some(l.name()?), ..Default::default() };
    let sig = |l: &mut Lexer| -> Result<Vec<ValueInfoProto>> {
        let mut out = Vec::new();
        l.expect("(")?;
        while !l.eat(")")? {
            let first = l.word()?;
            out.push(parse_vdecl(l, &first)?);
            l.eat(",")?;
        }
        Ok(out)
    };
    g.input = sig(l)?;
    l.expect("=>")?;
    g.output = sig(l)?;
    l.expect("<")?;
    while !l.eat(">")? {
        let first = l.word()?;
        match first.as_str() {
            "sparse" => {
                if l.word()? != "hex" {
                    return Err(l.err("expected hex"));
                }
                let b = l.hex_bytes()?;
                g.sparse_initializer.push(SparseTensorProto::decode(b.as_slice()).map_err(|e| l.err(format!("bad sparse tensor: {e}")))?);
            }
            "quantization_annotation" => {
                if l.word()? != "hex" {
                    return Err(l.err("expected hex"));
                }
                let b = l.hex_bytes()?;
                g.quantization_annotation.push(TensorAnnotation::decode(b.as_slice()).map_err(|e| l.err(format!("bad annotation: {e}")))?);
            }
            "doc_string" => g.doc_string = Some(l.string()?),
            "metadata_props" => g.metadata_props.extend(parse_props(l)?),
            _ => {
                let ty = parse_type(l, &first)?;
                let name = l.name()?;
                if l.eat("=")? {
                    let t = parse_tensor_value(l, &name, &ty)?;
                    g.initializer.push(t);
                } else {
                    let mut vi = ValueInfoProto { name: Some(name), r#type: Some(ty), ..Default::default() };
                    if l.eat("@")? {
                        if l.word()? != "hex" {
                            return Err(l.err("expected 'hex' after '@'"));
                        }
                        let b = l.hex_bytes()?;
                        let extra = ValueInfoProto::decode(b.as_slice()).map_err(|e| l.err(format!("bad value_info extra: {e}")))?;
                        vi.doc_string = extra.doc_string;
                        vi.metadata_props = extra.metadata_props;
                    }
                    g.value_info.push(vi);
                }
            }
        }
        l.eat(",")?;
    }
    l.expect("{")?;
    while !l.eat("}")? {
        let mut n = NodeProto::default();
        if l.eat("[")? {
            n.name = Some(l.name()?);
            l.expect("]")?;
        }
        loop {
            n.output.push(l.name()?);
            if !l.eat(",")? {
                break;
            }
        }
        l.expect("=")?;
        n.op_type = Some(l.name()?);
        if l.eat("<")? {
            while !l.eat(">")? {
                n.attribute.push(parse_attr(l)?);
                l.eat(",")?;
            }
        }
        l.expect("(")?;
        while !l.eat(")")? {
            n.input.push(l.name()?);
            l.eat(",")?;
        }
        if l.eat("@")? {
            l.expect("{")?;
            while !l.eat("}")? {
                let k = l.name()?;
                l.expect("=")?;
                match k.as_str() {
                    "domain" => n.domain = Some(l.string()?),
                    "doc_string" => n.doc_string = Some(l.string()?),
                    "overload" => n.overload = Some(l.string()?),
                    "device_configurations" => {
                        if l.word()? != "hex" {
                            return Err(l.err("expected hex"));
                        }
                        let b = l.hex_bytes()?;
                        let x = NodeProto::decode(b.as_slice()).map_err(|e| l.err(format!("bad device configuration: {e}")))?;
                        n.device_configurations = x.device_configurations;
                    }
                    _ => {
                        let v = l.string()?;
                        n.metadata_props.push(StringStringEntryProto { key: Some(k), value: Some(v) });
                    }
                }
                l.eat(",")?;
            }
        }
        g.node.push(n);
    }
    if let Tok::Word(w) = l.peek()? {
        if w == "quant" {
            l.next()?;
            l.expect("{")?;
            while !l.eat("}")? {
                let t = l.name()?;
                l.expect(":")?;
                let v = l.rest_of_line();
                g.metadata_props.push(StringStringEntryProto { key: Some(format!("{QUANT_KEY_PREFIX}{t}")), value: Some(v) });
            }
        }
    }
    Ok(g)
}
