//! A schema-driven walk over protobuf wire data that finds fields the generated types
//! do not know. prost silently skips unknown fields on decode; the loader uses this walk
//! to name exactly what a re-encode would drop (message path, field number, wire type).

use prost::Message;
use prost_types::{field_descriptor_proto::Type, DescriptorProto, FileDescriptorSet};
use std::collections::HashMap;
use std::sync::OnceLock;

static DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/onnx_descriptor.bin"));

struct Schema {
    /// message full name (".onnx.ModelProto") -> (field number -> (type, nested message name))
    messages: HashMap<String, HashMap<i32, (Type, Option<String>, String)>>,
}

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        // The descriptor is produced by our own build script from proto/onnx.proto, so a
        // decode failure here is a build defect, not bad user input.
        let fds = FileDescriptorSet::decode(DESCRIPTOR).expect("embedded descriptor set is valid");
        let mut messages = HashMap::new();
        fn add(prefix: &str, m: &DescriptorProto, out: &mut HashMap<String, HashMap<i32, (Type, Option<String>, String)>>) {
            let name = format!("{prefix}.{}", m.name());
            let mut fields = HashMap::new();
            for f in &m.field {
                let ty = f.r#type();
                let nested = if ty == Type::Message { Some(f.type_name().to_string()) } else { None };
                fields.insert(f.number(), (ty, nested, f.name().to_string()));
            }
            for n in &m.nested_type {
                add(&name, n, out);
            }
            out.insert(name, fields);
        }
        for file in &fds.file {
            let prefix = if file.package().is_empty() { String::new() } else { format!(".{}", file.package()) };
            for m in &file.message_type {
                add(&prefix, m, &mut messages);
            }
        }
        Schema { messages }
    })
}

/// One field present in the input that the schema does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Path of message names and field names leading to it, e.g. `ModelProto.graph.node[3]`.
    pub path: String,
    pub number: u64,
    pub wire_type: u8,
    pub bytes: usize,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Walks `buf` as message `msg` (full name, e.g. ".onnx.ModelProto"), collecting
/// unknown fields. Stops collecting after `limit` findings. Returns `None` on
/// malformed wire data (the decoder has already accepted it, so this is unexpected).
pub fn find_unknown_fields(buf: &[u8], msg: &str, limit: usize) -> Vec<UnknownField> {
    let mut out = Vec::new();
    let short = msg.rsplit('.').next().unwrap_or(msg).to_string();
    walk(buf, msg, &short, &mut out, limit, 0);
    out
}

fn walk(buf: &[u8], msg: &str, path: &str, out: &mut Vec<UnknownField>, limit: usize, depth: usize) {
    if depth > 100 || out.len() >= limit {
        return;
    }
    let schema = schema();
    let Some(fields) = schema.messages.get(msg) else { return };
    let mut pos = 0usize;
    let mut counters: HashMap<u64, usize> = HashMap::new();
    while pos < buf.len() && out.len() < limit {
        let start = pos;
        let Some(key) = read_varint(buf, &mut pos) else { return };
        let number = key >> 3;
        let wt = (key & 7) as u8;
        let (payload_start, payload_end) = match wt {
            0 => {
                if read_varint(buf, &mut pos).is_none() {
                    return;
                }
                (start, pos)
            }
            1 => {
                pos += 8;
                (start, pos)
            }
            5 => {
                pos += 4;
                (start, pos)
            }
            2 => {
                let Some(len) = read_varint(buf, &mut pos) else { return };
                let s = pos;
                pos = pos.saturating_add(len as usize);
                (s, pos)
            }
            _ => {
                out.push(UnknownField { path: path.to_string(), number, wire_type: wt, bytes: buf.len() - start });
                return;
            }
        };
        if pos > buf.len() {
            return;
        }
        match fields.get(&(number as i32)) {
            None => out.push(UnknownField { path: path.to_string(), number, wire_type: wt, bytes: pos - start }),
            Some((Type::Message, Some(nested), name)) if wt == 2 => {
                let idx = counters.entry(number).or_insert(0);
                let sub = format!("{path}.{name}[{idx}]");
                *idx += 1;
                walk(&buf[payload_start..payload_end], nested, &sub, out, limit, depth + 1);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unknown_top_level_and_nested_fields() {
        let mut m = crate::proto::ModelProto::default();
        m.ir_version = Some(8);
        let mut g = crate::proto::GraphProto::default();
        g.name = Some("g".into());
        m.graph = Some(g);
        let mut bytes = m.encode_to_vec();
        assert!(find_unknown_fields(&bytes, ".onnx.ModelProto", 10).is_empty());
        // field 99, varint 5 at the top level
        bytes.extend_from_slice(&[(99 << 3) as u8 | 0x80, 0x06, 5]);
        let found = find_unknown_fields(&bytes, ".onnx.ModelProto", 10);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].number, 99);
        assert_eq!(found[0].path, "ModelProto");
    }
}
