use super::QUANT_KEY_PREFIX;
use crate::error::Result;
use crate::ir::tensor::{dtype_name, Tensor, PLACEHOLDER_KEY, PLACEHOLDER_ZEROS_KEY};
use crate::ir::Model;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::*;
use prost::Message;
use std::fmt::Write;

#[derive(Debug, Clone, Copy)]
pub struct PrintOptions {
    /// Tensors with at most this many elements are printed inline.
    pub inline_limit: usize,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions { inline_limit: 8 }
    }
}

/// Prints the IR model in the canonical text form.
pub fn print(model: &Model, opts: &PrintOptions) -> Result<String> {
    let proto = crate::ir::export::export_with_annotations(model)?;
    print_model_proto(&proto, opts)
}

/// Prints a ModelProto in the canonical text form.
pub fn print_model_proto(m: &ModelProto, opts: &PrintOptions) -> Result<String> {
    let mut s = String::new();
    let mut head: Vec<String> = Vec::new();
    if let Some(v) = m.ir_version {
        head.push(format!("ir_version: {v}"));
    }
    if !m.opset_import.is_empty() {
        let ops: Vec<String> = m.opset_import.iter().map(|o| format!("{} : {}", quote(o.domain()), o.version())).collect();
        head.push(format!("opset_import: [{}]", ops.join(", ")));
    }
    if let Some(v) = &m.producer_name {
        head.push(format!("producer_name: {}", quote(v)));
    }
    if let Some(v) = &m.producer_version {
        head.push(format!("producer_version: {}", quote(v)));
    }
    if let Some(v) = &m.domain {
        head.push(format!("domain: {}", quote(v)));
    }
    if let Some(v) = m.model_version {
        head.push(format!("model_version: {v}"));
    }
    if let Some(v) = &m.doc_string {
        head.push(format!("doc_string: {}", quote(v)));
    }
    if !m.metadata_props.is_empty() {
        head.push(format!("metadata_props: [{}]", props(&m.metadata_props)));
    }
    for (key, items) in [
        ("training_info", m.training_info.iter().map(|x| x.encode_to_vec()).collect::<Vec<_>>()),
        ("functions", m.functions.iter().map(|x| x.encode_to_vec()).collect()),
        ("configuration", m.configuration.iter().map(|x| x.encode_to_vec()).collect()),
    ] {
        if !items.is_empty() {
            let hx: Vec<String> = items.iter().map(|b| format!("hex \"{}\"", hex(b))).collect();
            head.push(format!("{key}: [{}]", hx.join(", ")));
        }
    }
    s.push_str("<\n");
    for (i, h) in head.iter().enumerate() {
        let _ = writeln!(s, "  {h}{}", if i + 1 < head.len() { "," } else { "" });
    }
    s.push_str(">\n");
    if let Some(g) = &m.graph {
        print_graph(&mut s, g, 0, opts);
    }
    Ok(s)
}

fn props(p: &[StringStringEntryProto]) -> String {
    p.iter().map(|e| format!("{} : {}", quote(e.key()), quote(e.value()))).collect::<Vec<_>>().join(", ")
}

pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '+')
}

/// A name as a bare word when it lexes back as one, quoted otherwise.
pub(crate) fn name(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars().all(is_word_char)
        && !s.ends_with(':')
        && !s.starts_with(':')
        && !matches!(s, "graph" | "hex" | "quant");
    if bare {
        s.to_string()
    } else {
        quote(s)
    }
}

pub(crate) use crate::util::quote;

fn quote_bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => quote(s),
        Err(_) => format!("hex \"{}\"", hex(b)),
    }
}

fn fmt_f32(v: f32) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v:?}")
    }
}

pub(crate) fn type_str(t: Option<&TypeProto>) -> String {
    use crate::proto::tensor_shape_proto::dimension::Value as DV;
    use crate::proto::type_proto::Value as V;
    let Some(t) = t else { return "undefined".into() };
    match &t.value {
        Some(V::TensorType(tt)) if t.denotation.is_none() => {
            let mut s = dtype_name(tt.elem_type()).to_string();
            if let Some(shape) = &tt.shape {
                let dims: Option<Vec<String>> = shape
                    .dim
                    .iter()
                    .map(|d| {
                        if d.denotation.is_some() {
                            return None;
                        }
                        Some(match &d.value {
                            Some(DV::DimValue(v)) => v.to_string(),
                            // a symbolic dim that reads as a number must be quoted
                            Some(DV::DimParam(p)) if p.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') => quote(p),
                            Some(DV::DimParam(p)) => name(p),
                            None => "?".into(),
                        })
                    })
                    .collect();
                match dims {
                    Some(d) => {
                        let _ = write!(s, "[{}]", d.join(","));
                    }
                    None => return format!("type hex \"{}\"", hex(&t.encode_to_vec())),
                }
            }
            s
        }
        _ => format!("type hex \"{}\"", hex(&t.encode_to_vec())),
    }
}

fn tensor_type(t: &TensorProto) -> String {
    let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", dtype_name(t.data_type()), dims.join(","))
}

/// Tensor value: inline list, summary, or hex when neither fits.
fn tensor_value(t: &TensorProto, opts: &PrintOptions) -> String {
    let tensor = Tensor::new(t.clone());
    // fields that only hex can carry
    let plain = t.doc_string.is_none()
        && t.segment.is_none()
        && t.external_data.is_empty()
        && t.data_location.unwrap_or(0) == 0
        && (t.metadata_props.is_empty() || tensor.is_placeholder());
    if plain {
        if tensor.is_placeholder() {
            let h = t.metadata_props.iter().find(|m| m.key() == PLACEHOLDER_KEY).map(|m| m.value()).unwrap_or("");
            let z = t.metadata_props.iter().find(|m| m.key() == PLACEHOLDER_ZEROS_KEY).map(|m| m.value()).unwrap_or("0");
            return format!("{{hash: {h}, zeros: {z}}}");
        }
        if let Ok(n) = tensor.numel() {
            let dt = t.data_type();
            if n <= opts.inline_limit && dt == 1 {
                if let Ok(v) = tensor.to_f32() {
                    return format!("[{}]", v.iter().map(|x| fmt_f32(*x)).collect::<Vec<_>>().join(", "));
                }
            }
            if n <= opts.inline_limit && matches!(dt, 2 | 3 | 4 | 5 | 6 | 7 | 9) {
                if let Ok(v) = tensor.to_i64() {
                    return format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "));
                }
            }
            if let (Ok(h), Ok(z)) = (tensor.content_hash(), tensor.zero_fraction()) {
                return format!("{{hash: {h:016x}, zeros: {z:.4}}}");
            }
        }
    }
    format!("hex \"{}\"", hex(&t.encode_to_vec()))
}

fn attr_value(a: &AttributeProto, indent: usize, opts: &PrintOptions) -> String {
    let ty = AttributeType::try_from(a.r#type()).unwrap_or(AttributeType::Undefined);
    match ty {
        AttributeType::Float => fmt_f32(a.f()),
        AttributeType::Int => a.i().to_string(),
        AttributeType::String => quote_bytes(a.s()),
        AttributeType::Floats => format!("[{}]", a.floats.iter().map(|v| fmt_f32(*v)).collect::<Vec<_>>().join(", ")),
        AttributeType::Ints => format!("[{}]", a.ints.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
        AttributeType::Strings => format!("[{}]", a.strings.iter().map(|v| quote_bytes(v)).collect::<Vec<_>>().join(", ")),
        AttributeType::Tensor => match &a.t {
            Some(t) => format!("{} {}", tensor_type(t), tensor_value(t, opts)),
            None => "hex \"\"".into(),
        },
        AttributeType::Graph => match &a.g {
            Some(g) => {
                let mut s = String::from("graph ");
                print_graph(&mut s, g, indent + 2, opts);
                s.trim_end().to_string()
            }
            None => "hex \"\"".into(),
        },
        _ => String::new(),
    }
}

fn attr_needs_hex(a: &AttributeProto) -> bool {
    let ty = AttributeType::try_from(a.r#type()).unwrap_or(AttributeType::Undefined);
    let simple = matches!(
        ty,
        AttributeType::Float
            | AttributeType::Int
            | AttributeType::String
            | AttributeType::Floats
            | AttributeType::Ints
            | AttributeType::Strings
            | AttributeType::Tensor
            | AttributeType::Graph
    );
    !simple || a.doc_string.is_some() || a.ref_attr_name.is_some()
        // values present that the declared type does not show
        || (ty != AttributeType::Float && a.f.is_some())
        || (ty != AttributeType::Int && a.i.is_some())
        || (ty != AttributeType::String && a.s.is_some())
        || (ty != AttributeType::Tensor && a.t.is_some())
        || (ty != AttributeType::Graph && a.g.is_some())
        || (ty != AttributeType::Floats && !a.floats.is_empty())
        || (ty != AttributeType::Ints && !a.ints.is_empty())
        || (ty != AttributeType::Strings && !a.strings.is_empty())
        || !a.tensors.is_empty() || !a.graphs.is_empty() || a.tp.is_some() || !a.type_protos.is_empty()
        || a.sparse_tensor.is_some() || !a.sparse_tensors.is_empty()
}

fn type_word(ty: AttributeType) -> &'static str {
    match ty {
        AttributeType::Float => "float",
        AttributeType::Int => "int",
        AttributeType::String => "string",
        AttributeType::Floats => "floats",
        AttributeType::Ints => "ints",
        AttributeType::Strings => "strings",
        AttributeType::Tensor => "tensor",
        AttributeType::Graph => "graph",
        _ => "hex",
    }
}

fn print_attr(a: &AttributeProto, indent: usize, opts: &PrintOptions) -> String {
    if attr_needs_hex(a) {
        return format!("{}: hex = \"{}\"", name(a.name()), hex(&a.encode_to_vec()));
    }
    let ty = AttributeType::try_from(a.r#type()).unwrap_or(AttributeType::Undefined);
    let empty_list = matches!(ty, AttributeType::Floats | AttributeType::Ints | AttributeType::Strings)
        && a.floats.is_empty()
        && a.ints.is_empty()
        && a.strings.is_empty();
    // a float that prints like an int is impossible ({:?} keeps ".0"); lists of one kind
    // are unambiguous once non-empty
    if empty_list {
        format!("{}: {} = []", name(a.name()), type_word(ty))
    } else {
        format!("{} = {}", name(a.name()), attr_value(a, indent, opts))
    }
}

fn print_graph(s: &mut String, g: &GraphProto, indent: usize, opts: &PrintOptions) {
    let pad = " ".repeat(indent);
    let sig = |vs: &[ValueInfoProto]| -> String {
        vs.iter()
            .map(|v| {
                let mut x = format!("{} {}", type_str(v.r#type.as_ref()), name(v.name()));
                if v.doc_string.is_some() || !v.metadata_props.is_empty() {
                    let mut extra = ValueInfoProto::default();
                    extra.doc_string = v.doc_string.clone();
                    extra.metadata_props = v.metadata_props.clone();
                    let _ = write!(x, " @hex \"{}\"", hex(&extra.encode_to_vec()));
                }
                x
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(s, "{} ({}) => ({})", name(g.name()), sig(&g.input), sig(&g.output));
    let mut decls: Vec<String> = Vec::new();
    for t in &g.initializer {
        decls.push(format!("{} {} = {}", tensor_type(t), name(t.name()), tensor_value(t, opts)));
    }
    for v in &g.value_info {
        decls.push(sig(std::slice::from_ref(v)));
    }
    for sp in &g.sparse_initializer {
        decls.push(format!("sparse hex \"{}\"", hex(&sp.encode_to_vec())));
    }
    for qa in &g.quantization_annotation {
        decls.push(format!("quantization_annotation hex \"{}\"", hex(&qa.encode_to_vec())));
    }
    if let Some(d) = &g.doc_string {
        decls.push(format!("doc_string {}", quote(d)));
    }
    let (quant, meta): (Vec<_>, Vec<_>) = g.metadata_props.iter().partition(|m| m.key().starts_with(QUANT_KEY_PREFIX));
    if !meta.is_empty() {
        let m: Vec<StringStringEntryProto> = meta.into_iter().cloned().collect();
        decls.push(format!("metadata_props [{}]", props(&m)));
    }
    let _ = writeln!(s, "{pad}<");
    for (i, d) in decls.iter().enumerate() {
        let _ = writeln!(s, "{pad}  {d}{}", if i + 1 < decls.len() { "," } else { "" });
    }
    let _ = writeln!(s, "{pad}>");
    let _ = writeln!(s, "{pad}{{");
    for n in &g.node {
        let mut line = String::new();
        if let Some(nm) = &n.name {
            let _ = write!(line, "[{}] ", name(nm));
        }
        let outs: Vec<String> = n.output.iter().map(|o| if o.is_empty() { "\"\"".to_string() } else { name(o) }).collect();
        let op = name(n.op_type());
        let _ = write!(line, "{} = {op}", outs.join(", "));
        if !n.attribute.is_empty() {
            let attrs: Vec<String> = n.attribute.iter().map(|a| print_attr(a, indent + 2, opts)).collect();
            let _ = write!(line, " <{}>", attrs.join(", "));
        }
        let ins: Vec<String> = n.input.iter().map(|i| if i.is_empty() { "\"\"".to_string() } else { name(i) }).collect();
        let _ = write!(line, " ({})", ins.join(", "));
        let mut extra: Vec<String> = Vec::new();
        if let Some(d) = &n.domain {
            extra.push(format!("domain = {}", quote(d)));
        }
        if let Some(d) = &n.doc_string {
            extra.push(format!("doc_string = {}", quote(d)));
        }
        if let Some(o) = &n.overload {
            extra.push(format!("overload = {}", quote(o)));
        }
        for m in &n.metadata_props {
            extra.push(format!("{} = {}", quote(m.key()), quote(m.value())));
        }
        if !n.device_configurations.is_empty() {
            let mut x = NodeProto::default();
            x.device_configurations = n.device_configurations.clone();
            extra.push(format!("device_configurations = hex \"{}\"", hex(&x.encode_to_vec())));
        }
        if !extra.is_empty() {
            let _ = write!(line, " @{{{}}}", extra.join(", "));
        }
        let _ = writeln!(s, "{pad}  {line}");
    }
    let _ = writeln!(s, "{pad}}}");
    if !quant.is_empty() {
        let _ = writeln!(s, "{pad}quant {{");
        for q in quant {
            let t = &q.key()[QUANT_KEY_PREFIX.len()..];
            let _ = writeln!(s, "{pad}  {}: {}", name(t), q.value());
        }
        let _ = writeln!(s, "{pad}}}");
    }
}
