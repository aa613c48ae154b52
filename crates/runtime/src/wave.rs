//! Calls written as text: arguments in WAVE (the WebAssembly Value Encoding) checked against an
//! export's signature, results printed back in WAVE, and types named as WIT names them, so a
//! person calling a component by hand is told what it expects.

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::wasm_wave;
use wasmtime::component::{Component, Type, Val};

use crate::CallFailed;

/// An export's parameters and results.
pub struct Signature {
    /// `interface.function`, or the function alone for one exported at the top.
    pub path: String,
    pub params: Vec<(String, Type)>,
    pub results: Vec<Type>,
}

impl Signature {
    /// The signature as WIT writes it: `greet(name: string) -> string`.
    pub fn wit(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, ty)| format!("{name}: {}", type_name(ty)))
            .collect();
        let function = self.path.rsplit('.').next().unwrap_or(&self.path);
        let mut text = format!("{function}({})", params.join(", "));
        if let Some(result) = self.results.first() {
            text.push_str(" -> ");
            text.push_str(&type_name(result));
        }
        text
    }

    /// Parses each argument as WAVE against its parameter's type.
    pub fn parse_args(&self, args: &[String]) -> Result<Vec<Val>, CallFailed> {
        if args.len() != self.params.len() {
            return Err(CallFailed(format!(
                "`{}` takes {} argument(s), {} given: {}",
                self.path,
                self.params.len(),
                args.len(),
                self.wit()
            )));
        }
        self.params
            .iter()
            .zip(args)
            .map(|((name, ty), text)| {
                wasm_wave::from_str::<Val>(ty, text).map_err(|e| {
                    CallFailed(format!(
                        "argument `{name}` must be a {}; `{text}` is not one ({e})",
                        type_name(ty)
                    ))
                })
            })
            .collect()
    }
}

/// Finds `path` (`interface.function`, or a top-level function) among `component`'s exports.
pub fn signature(component: &Component, path: &str) -> Result<Signature, CallFailed> {
    let engine = component.engine();
    let ty = component.component_type();
    let (func, path) = match path.rsplit_once('.') {
        // A version has dots too (`a:b/c@0.2.0.f`): the function is after the last one, and a
        // path with no `/` before it is a top-level name after all.
        Some((interface, function)) if interface.contains('/') => {
            // `a:b/c` names `a:b/c@1.0.0` when the component exports only one version of it.
            let interface = if interface.contains('@') {
                interface.to_string()
            } else {
                let versions: Vec<&str> = ty
                    .exports(engine)
                    .map(|(name, _)| name)
                    .filter(|name| name.split('@').next() == Some(interface))
                    .collect();
                match versions[..] {
                    [only] => only.to_string(),
                    _ => interface.to_string(),
                }
            };
            let interface = interface.as_str();
            let path = format!("{interface}.{function}");
            let Some(ComponentItem::ComponentInstance(instance)) =
                ty.get_export(engine, interface).map(|e| e.ty)
            else {
                return Err(CallFailed(format!(
                    "the component exports no interface `{interface}`; it exports {}",
                    callable_list(component)
                )));
            };
            match instance.get_export(engine, function).map(|e| e.ty) {
                Some(ComponentItem::ComponentFunc(func)) => (func, path),
                _ => {
                    return Err(CallFailed(format!(
                        "`{interface}` has no function `{function}`; it has {}",
                        names(instance.exports(engine).filter_map(|(n, item)| {
                            matches!(item.ty, ComponentItem::ComponentFunc(_)).then_some(n)
                        }))
                    )))
                }
            }
        }
        _ => match ty.get_export(engine, path).map(|e| e.ty) {
            Some(ComponentItem::ComponentFunc(func)) => (func, path.to_string()),
            _ => {
                return Err(CallFailed(format!(
                "the component exports no function `{path}`; write INTERFACE.FUNCTION, one of {}",
                callable_list(component)
            )))
            }
        },
    };
    Ok(signature_of(path, &func))
}

fn signature_of(path: String, func: &ComponentFunc) -> Signature {
    Signature {
        path,
        params: func
            .params()
            .map(|(name, ty)| (name.to_string(), ty))
            .collect(),
        results: func.results().collect(),
    }
}

/// Every function the component exports, as `interface.function` paths with their signatures.
pub fn callable(component: &Component) -> Vec<Signature> {
    let engine = component.engine();
    let mut out = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => out.push(signature_of(name.to_string(), &func)),
            ComponentItem::ComponentInstance(instance) => {
                for (function, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty {
                        out.push(signature_of(format!("{name}.{function}"), &func));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn callable_list(component: &Component) -> String {
    let all = callable(component);
    if all.is_empty() {
        return "no functions".to_string();
    }
    names(all.iter().map(|s| s.path.as_str()))
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if quoted.is_empty() {
        "none".to_string()
    } else {
        quoted.join(", ")
    }
}

/// Prints results as WAVE.
pub fn print(values: &[Val]) -> Result<Vec<String>, CallFailed> {
    values
        .iter()
        .map(|v| {
            wasm_wave::to_string(v).map_err(|e| CallFailed(format!("cannot print a result: {e}")))
        })
        .collect()
}

/// A type as WIT spells it; records, variants, enums and flags are shown by their shape, since
/// the component's type names are not kept at run time.
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", type_name(&list.ty())),
        Type::FixedLengthList(list) => format!("list<{}, {}>", type_name(&list.ty()), list.len()),
        Type::Option(option) => format!("option<{}>", type_name(&option.ty())),
        Type::Result(result) => {
            let side = |t: Option<Type>| t.map_or("_".to_string(), |t| type_name(&t));
            match (result.ok(), result.err()) {
                (None, None) => "result".into(),
                (ok, err) => format!("result<{}, {}>", side(ok), side(err)),
            }
        }
        Type::Tuple(tuple) => {
            let parts: Vec<String> = tuple.types().map(|t| type_name(&t)).collect();
            format!("tuple<{}>", parts.join(", "))
        }
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields()
                .map(|f| format!("{}: {}", f.name, type_name(&f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Variant(variant) => {
            let cases: Vec<String> = variant
                .cases()
                .map(|c| match c.ty {
                    Some(ty) => format!("{}({})", c.name, type_name(&ty)),
                    None => c.name.to_string(),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Map(_) => "map".into(),
    }
}
