//! `POST /prompt` validation, a port of ComfyUI 0.8.0's `execution.validate_prompt` and
//! `validate_inputs`: the same checks in the same order, and error bodies shaped exactly like the
//! recorded `errors/*.json`.

use serde_json::{Map, Number, Value, json};

use crate::catalog::{Catalog, InputCategory, InputDef, InputType, LOAD_IMAGE};
use crate::ordered::OValue;
use crate::pyfmt;

/// A prompt that passed: the output nodes to execute, and errors of outputs that were dropped.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) outputs: Vec<String>,
    pub(crate) node_errors: Value,
}

/// A prompt that failed: the `error` and `node_errors` of the 400 body.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) error: Value,
    pub(crate) node_errors: Value,
}

impl Rejection {
    /// The 400 body: `{"error": .., "node_errors": ..}`.
    pub(crate) fn body(&self) -> Value {
        json!({"error": self.error, "node_errors": self.node_errors})
    }
}

/// The prompt is not something ComfyUI's validator survives (it raises, and aiohttp answers 500).
#[derive(Debug, thiserror::Error)]
#[error("the prompt is not a JSON object")]
pub(crate) struct Unprocessable;

/// Whether `LoadImage` can load a file of this name (`folder_paths.exists_annotated_filepath`).
pub(crate) type InputFiles<'a> = &'a dyn Fn(&str) -> bool;

/// Validates a prompt graph; `partial` restricts the outputs like `partial_execution_targets`;
/// `input_files` answers `LoadImage`'s own check of its file.
pub(crate) fn validate_prompt(
    catalog: &Catalog,
    prompt: &OValue,
    partial: Option<&[String]>,
    input_files: InputFiles<'_>,
) -> Result<Result<Accepted, Rejection>, Unprocessable> {
    let nodes = prompt.entries().ok_or(Unprocessable)?;
    let mut outputs = Vec::new();
    for (id, node) in &nodes {
        let Some(class_value) = node.get("class_type") else {
            return Ok(Err(graph_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.".to_owned(),
                format!("Node ID '#{id}'"),
            )));
        };
        let class = class_value.as_str().and_then(|name| catalog.get(name));
        let Some(class) = class else {
            return Ok(Err(graph_error(
                "invalid_prompt",
                format!(
                    "Cannot execute because node {} does not exist.",
                    pyfmt::str_of(&class_value.to_value())
                ),
                format!("Node ID '#{id}'"),
            )));
        };
        if class.output_node && partial.is_none_or(|targets| targets.iter().any(|t| t == id)) {
            outputs.push((*id).to_owned());
        }
    }
    if outputs.is_empty() {
        return Ok(Err(graph_error(
            "prompt_no_outputs",
            "Prompt has no outputs".to_owned(),
            String::new(),
        )));
    }

    let mut validator = Validator {
        catalog,
        input_files,
        nodes: &nodes,
        validated: Vec::new(),
        in_progress: Vec::new(),
    };
    let mut good_outputs = Vec::new();
    let mut failed_reasons: Vec<Value> = Vec::new();
    let mut node_errors: Vec<(String, Value)> = Vec::new();
    for output in &outputs {
        let result = match validator.validate_inputs(output) {
            Ok(result) => result,
            Err(exception) => {
                let mut traceback = vec![TB_VALIDATE_PROMPT.to_owned()];
                traceback.extend(exception.traceback);
                let reasons = vec![json!({
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": exception.message,
                    "extra_info": {"exception_type": exception.type_name, "traceback": traceback},
                })];
                validator.record(output, false, reasons.clone());
                NodeResult {
                    valid: false,
                    errors: reasons,
                }
            }
        };
        if result.valid {
            good_outputs.push(output.clone());
            continue;
        }
        failed_reasons.extend(result.errors);
        // Every node that failed with reasons of its own is listed once, with the outputs it blocks;
        // nodes that are only invalid because of an upstream error are left out.
        for (node_id, node_result) in &validator.validated {
            if node_result.valid || node_result.errors.is_empty() {
                continue;
            }
            let index = match node_errors.iter().position(|(id, _)| id == node_id) {
                Some(index) => index,
                None => {
                    let class_type = validator.class_type(node_id).unwrap_or_default();
                    node_errors.push((
                        node_id.clone(),
                        json!({"errors": node_result.errors, "dependent_outputs": [], "class_type": class_type}),
                    ));
                    node_errors.len() - 1
                }
            };
            if let Some(dependents) = node_errors[index].1["dependent_outputs"].as_array_mut() {
                dependents.push(Value::String(output.clone()));
            }
        }
    }
    let node_errors = Value::Object(node_errors.into_iter().collect());
    if good_outputs.is_empty() {
        let details: Vec<String> = failed_reasons
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r["message"].as_str().unwrap_or(""),
                    r["details"].as_str().unwrap_or("")
                )
            })
            .collect();
        let error = json!({
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": details.join("\n"),
            "extra_info": {},
        });
        return Ok(Err(Rejection { error, node_errors }));
    }
    // ComfyUI returns `list(good_outputs)` of a Python set, whose order changes from process to
    // process; it decides which ready output node runs first. Reverse prompt order is what the
    // recorded server happened to use (`["4", "3"]`), so the simulator settles on it.
    good_outputs.reverse();
    Ok(Ok(Accepted {
        outputs: good_outputs,
        node_errors,
    }))
}

fn graph_error(kind: &str, message: String, details: String) -> Rejection {
    Rejection {
        error: json!({"type": kind, "message": message, "details": details, "extra_info": {}}),
        node_errors: json!({}),
    }
}

#[derive(Debug, Clone)]
struct NodeResult {
    valid: bool,
    errors: Vec<Value>,
}

/// A Python exception raised while validating (ComfyUI catches these one level up).
#[derive(Debug)]
struct PyException {
    type_name: &'static str,
    message: String,
    traceback: Vec<String>,
}

/// The tracebacks a genuine 0.8.0 prints for these exceptions (paths of the recorded server).
const TB_VALIDATE_PROMPT: &str = "  File \"/app/ComfyUI/execution.py\", line 1043, in validate_prompt\n    m = await validate_inputs(prompt_id, prompt, o, validated)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n";
const TB_INPUTS: &str = "  File \"/app/ComfyUI/execution.py\", line 768, in validate_inputs\n    inputs = prompt[unique_id]['inputs']\n             ~~~~~~~~~~~~~~~~~^^^^^^^^^^\n";
const TB_LOOKUP: &str = "  File \"/app/ComfyUI/execution.py\", line 818, in validate_inputs\n    o_class_type = prompt[o_id]['class_type']\n                   ~~~~~~^^^^^^\n";
const TB_SLOT: &str = "  File \"/app/ComfyUI/execution.py\", line 820, in validate_inputs\n    received_type = r[val[1]]\n                    ~^^^^^^^^\n";
const TB_INNER: &str = "  File \"/app/ComfyUI/execution.py\", line 839, in validate_inputs\n    r = await validate_inputs(prompt_id, prompt, o_id, validated)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n";

struct Validator<'a> {
    catalog: &'a Catalog,
    input_files: InputFiles<'a>,
    nodes: &'a [(&'a str, &'a OValue)],
    /// Results in the order ComfyUI's `validated` dict receives them.
    validated: Vec<(String, NodeResult)>,
    /// Nodes being validated: a link back to one of them is a cycle, which Python hits as recursion.
    in_progress: Vec<String>,
}

impl<'a> Validator<'a> {
    fn node(&self, id: &str) -> Option<&'a OValue> {
        self.nodes.iter().rev().find(|(k, _)| *k == id).map(|(_, v)| *v)
    }

    fn class_type(&self, id: &str) -> Option<String> {
        self.node(id)
            .and_then(|n| n.get("class_type"))
            .and_then(OValue::as_str)
            .map(str::to_owned)
    }

    fn record(&mut self, id: &str, valid: bool, errors: Vec<Value>) {
        let result = NodeResult { valid, errors };
        match self.validated.iter_mut().find(|(k, _)| k == id) {
            Some(slot) => slot.1 = result,
            None => self.validated.push((id.to_owned(), result)),
        }
    }

    fn validate_inputs(&mut self, id: &str) -> Result<NodeResult, PyException> {
        if let Some((_, result)) = self.validated.iter().find(|(k, _)| k == id) {
            return Ok(result.clone());
        }
        if self.in_progress.iter().any(|k| k == id) {
            return Err(PyException {
                type_name: "RecursionError",
                message: "maximum recursion depth exceeded".to_owned(),
                traceback: vec![TB_INNER.to_owned()],
            });
        }
        let Some(node) = self.node(id) else {
            return Err(key_error(&Value::String(id.to_owned())));
        };
        let Some(inputs) = node.get("inputs") else {
            return Err(PyException {
                type_name: "KeyError",
                message: "'inputs'".to_owned(),
                traceback: vec![TB_INPUTS.to_owned()],
            });
        };
        let class_name = self.class_type(id).unwrap_or_default();
        let Some(class) = self.catalog.get(&class_name) else {
            return Err(key_error(&Value::String(class_name)));
        };
        let declared = class.inputs.clone();
        self.in_progress.push(id.to_owned());
        let outcome = self.check_inputs(&class_name, inputs, &declared);
        self.in_progress.retain(|k| k != id);
        let (valid, errors) = outcome?;
        let result = NodeResult {
            valid: valid && errors.is_empty(),
            errors,
        };
        self.record(id, result.valid, result.errors.clone());
        Ok(result)
    }

    fn check_inputs(
        &mut self,
        class_name: &str,
        inputs: &OValue,
        declared: &[InputDef],
    ) -> Result<(bool, Vec<Value>), PyException> {
        let mut errors = Vec::new();
        let mut valid = true;
        // `LoadImage.VALIDATE_INPUTS(image)`: its input skips the list check and is checked by it.
        let custom_input = (class_name == LOAD_IMAGE).then_some("image");
        for input in declared {
            let Some(raw) = inputs.get(&input.name) else {
                if input.category == InputCategory::Required {
                    errors.push(json!({
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": input.name,
                        "extra_info": {"input_name": input.name},
                    }));
                }
                continue;
            };
            if let OValue::Array(link) = raw {
                match self.check_link(input, link)? {
                    LinkCheck::Ok => {}
                    LinkCheck::UpstreamInvalid => valid = false,
                    LinkCheck::Error(error) => errors.push(error),
                }
                continue;
            }
            if custom_input == Some(input.name.as_str()) {
                continue;
            }
            if let Some(error) = check_widget(input, raw) {
                errors.push(error);
            }
        }
        if let Some(name) = custom_input
            && let Some(raw) = inputs.get(name)
            && !matches!(raw, OValue::Array(_))
        {
            let file = pyfmt::str_of(&raw.to_value());
            if !(self.input_files)(&file) {
                errors.push(json!({
                    "type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": format!("{name} - Invalid image file: {file}"),
                    "extra_info": {"input_name": name},
                }));
            }
        }
        Ok((valid, errors))
    }

    fn check_link(&mut self, input: &InputDef, link: &[OValue]) -> Result<LinkCheck, PyException> {
        if link.len() != 2 {
            return Ok(LinkCheck::Error(json!({
                "type": "bad_linked_input",
                "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                "details": input.name,
                "extra_info": {
                    "input_name": input.name,
                    "input_config": input.config(),
                    "received_value": OValue::Array(link.to_vec()).to_value(),
                },
            })));
        }
        let source = &link[0];
        // Node ids are dict keys, so only a string can name one; `prompt[1]` is a KeyError in Python.
        let Some(source_id) = source.as_str().filter(|id| self.node(id).is_some()) else {
            return Err(key_error(&source.to_value()));
        };
        let source_class = self.class_type(source_id).and_then(|c| self.catalog.get(&c));
        let return_types = source_class.map(|c| c.outputs.clone()).unwrap_or_default();
        let received_type = slot_type(&return_types, &link[1])?;
        let input_type = match &input.input_type {
            InputType::Named(name) => Some(name.as_str()),
            InputType::Combo(_) => None,
        };
        if !types_match(&received_type, input_type) {
            return Ok(LinkCheck::Error(json!({
                "type": "return_type_mismatch",
                "message": "Return type mismatch between linked nodes",
                "details": format!(
                    "{}, received_type({}) mismatch input_type({})",
                    input.name,
                    received_type,
                    input_type.map_or_else(|| pyfmt::repr(&input.config()[0]), str::to_owned)
                ),
                "extra_info": {
                    "input_name": input.name,
                    "input_config": input.config(),
                    "received_type": received_type,
                    "linked_node": OValue::Array(link.to_vec()).to_value(),
                },
            })));
        }
        match self.validate_inputs(source_id) {
            Ok(result) if result.valid => Ok(LinkCheck::Ok),
            Ok(_) => Ok(LinkCheck::UpstreamInvalid),
            Err(exception) => {
                let mut traceback = vec![TB_INNER.to_owned()];
                traceback.extend(exception.traceback);
                let reasons = vec![json!({
                    "type": "exception_during_inner_validation",
                    "message": "Exception when validating inner node",
                    "details": exception.message,
                    "extra_info": {
                        "input_name": input.name,
                        "input_config": input.config(),
                        "exception_message": exception.message,
                        "exception_type": exception.type_name,
                        "traceback": traceback,
                        "linked_node": OValue::Array(link.to_vec()).to_value(),
                    },
                })];
                self.record(source_id, false, reasons);
                Ok(LinkCheck::UpstreamInvalid)
            }
        }
    }
}

enum LinkCheck {
    Ok,
    UpstreamInvalid,
    Error(Value),
}

fn key_error(key: &Value) -> PyException {
    PyException {
        type_name: "KeyError",
        message: pyfmt::repr(key),
        traceback: vec![TB_LOOKUP.to_owned()],
    }
}

/// `RETURN_TYPES[slot]` with Python's indexing rules (negative indexes count from the end).
fn slot_type(return_types: &[String], slot: &OValue) -> Result<String, PyException> {
    let index = match slot {
        OValue::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().unwrap_or(i64::MAX),
        OValue::Bool(b) => i64::from(*b),
        other => {
            let type_name = match other {
                OValue::Number(_) => "float",
                OValue::String(_) => "str",
                OValue::Null => "NoneType",
                OValue::Array(_) => "list",
                _ => "dict",
            };
            return Err(PyException {
                type_name: "TypeError",
                message: format!("tuple indices must be integers or slices, not {type_name}"),
                traceback: vec![TB_SLOT.to_owned()],
            });
        }
    };
    let len = i64::try_from(return_types.len()).unwrap_or(i64::MAX);
    let resolved = if index < 0 { index + len } else { index };
    usize::try_from(resolved)
        .ok()
        .and_then(|i| return_types.get(i))
        .cloned()
        .ok_or_else(|| PyException {
            type_name: "IndexError",
            message: "tuple index out of range".to_owned(),
            traceback: vec![TB_SLOT.to_owned()],
        })
}

/// `validate_node_input`: equal names, a `*` wildcard, or overlapping comma-separated unions.
fn types_match(received: &str, input_type: Option<&str>) -> bool {
    let Some(input_type) = input_type else {
        return false;
    };
    if received == input_type {
        return true;
    }
    let received: Vec<&str> = received.split(',').map(str::trim).collect();
    let accepted: Vec<&str> = input_type.split(',').map(str::trim).collect();
    if received.contains(&"*") || accepted.contains(&"*") {
        return true;
    }
    received.iter().any(|r| accepted.contains(r))
}

/// A number after Python's `int()` or `float()`.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn to_value(self) -> Value {
        match self {
            Num::Int(i) => i64::try_from(i)
                .map(Value::from)
                .or_else(|_| u64::try_from(i).map(Value::from))
                .unwrap_or_else(|_| Number::from_f64(i as f64).map_or(Value::Null, Value::Number)),
            Num::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }

    fn python_str(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => pyfmt::float(f),
        }
    }

    fn from_json(n: &Number) -> Num {
        match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Num::Int(i128::from(i)),
            (None, Some(u)) => Num::Int(i128::from(u)),
            _ => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
        }
    }

    /// Python's mixed int/float comparison, exact for two ints.
    fn less_than(self, other: Num) -> bool {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a < b,
            (a, b) => a.as_f64() < b.as_f64(),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

fn python_type_name(value: &OValue) -> &'static str {
    match value {
        OValue::Null => "NoneType",
        OValue::Bool(_) => "bool",
        OValue::Number(n) if n.is_f64() => "float",
        OValue::Number(_) => "int",
        OValue::String(_) => "str",
        OValue::Array(_) => "list",
        OValue::Object(_) => "dict",
    }
}

/// Python's `int(value)`; the error is the exception's text.
fn python_int(value: &OValue) -> Result<Num, String> {
    match value {
        OValue::Number(n) => match Num::from_json(n) {
            Num::Float(f) if f.is_nan() => Err("cannot convert float NaN to integer".to_owned()),
            Num::Float(f) if f.is_infinite() => Err("cannot convert float infinity to integer".to_owned()),
            Num::Float(f) => Ok(Num::Int(f.trunc() as i128)),
            int => Ok(int),
        },
        OValue::Bool(b) => Ok(Num::Int(i128::from(*b))),
        OValue::String(s) => {
            let cleaned = s.trim().replace('_', "");
            cleaned
                .parse::<i128>()
                .map(Num::Int)
                .map_err(|_| format!("invalid literal for int() with base 10: {}", pyfmt::repr_str(s)))
        }
        other => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            python_type_name(other)
        )),
    }
}

/// Python's `float(value)`; the error is the exception's text.
fn python_float(value: &OValue) -> Result<Num, String> {
    match value {
        OValue::Number(n) => Ok(Num::Float(n.as_f64().unwrap_or(f64::NAN))),
        OValue::Bool(b) => Ok(Num::Float(if *b { 1.0 } else { 0.0 })),
        OValue::String(s) => {
            let cleaned = s.trim().replace('_', "").to_lowercase();
            let parsed = match cleaned.as_str() {
                "inf" | "+inf" | "infinity" | "+infinity" => Ok(f64::INFINITY),
                "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
                "nan" | "+nan" | "-nan" => Ok(f64::NAN),
                other => other.parse::<f64>(),
            };
            parsed
                .map(Num::Float)
                .map_err(|_| format!("could not convert string to float: {}", pyfmt::repr_str(s)))
        }
        other => Err(format!(
            "float() argument must be a string or a real number, not '{}'",
            python_type_name(other)
        )),
    }
}

/// Python's equality as used by `val not in combo_options` (1 == 1.0 == True).
fn python_equal(a: &Value, b: &Value) -> bool {
    let as_number = |v: &Value| match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Checks a widget (non-linked) value: conversion, then min, max and combo membership.
fn check_widget(input: &InputDef, raw: &OValue) -> Option<Value> {
    // `{"__value__": [...]}` wraps a list widget value so it is not taken for a link.
    let raw = match raw {
        OValue::Object(_) if raw.get("__value__").is_some() => raw.get("__value__").unwrap_or(raw),
        other => other,
    };
    let invalid = |type_name: &str, message: String| -> Value {
        let received = raw.to_value();
        json!({
            "type": "invalid_input_type",
            "message": format!("Failed to convert an input value to a {type_name} value"),
            "details": format!("{}, {}, {}", input.name, pyfmt::str_of(&received), message),
            "extra_info": {
                "input_name": input.name,
                "input_config": input.config(),
                "received_value": received,
                "exception_message": message,
            },
        })
    };
    let number = match &input.input_type {
        InputType::Named(t) if t == "INT" => match python_int(raw) {
            Ok(n) => Some(n),
            Err(message) => return Some(invalid("INT", message)),
        },
        InputType::Named(t) if t == "FLOAT" => match python_float(raw) {
            Ok(n) => Some(n),
            Err(message) => return Some(invalid("FLOAT", message)),
        },
        _ => None,
    };
    let range_error = |kind: &str, message: String, value: Num| -> Value {
        json!({
            "type": kind,
            "message": message,
            "details": input.name,
            "extra_info": {
                "input_name": input.name,
                "input_config": input.config(),
                "received_value": value.to_value(),
            },
        })
    };
    if let Some(value) = number {
        if let Some(Value::Number(min)) = input.extra.get("min")
            && value.less_than(Num::from_json(min))
        {
            let message = format!(
                "Value {} smaller than min of {}",
                value.python_str(),
                Num::from_json(min).python_str()
            );
            return Some(range_error("value_smaller_than_min", message, value));
        }
        if let Some(Value::Number(max)) = input.extra.get("max")
            && Num::from_json(max).less_than(value)
        {
            let message = format!(
                "Value {} bigger than max of {}",
                value.python_str(),
                Num::from_json(max).python_str()
            );
            return Some(range_error("value_bigger_than_max", message, value));
        }
    }
    if let InputType::Combo(options) = &input.input_type {
        let received = raw.to_value();
        if !options.iter().any(|option| python_equal(option, &received)) {
            // ComfyUI does not send back long lists such as a big folder of model files.
            let (list_info, config) = if options.len() > 20 {
                (format!("(list of length {})", options.len()), Value::Null)
            } else {
                (pyfmt::repr(&Value::Array(options.clone())), input.config())
            };
            return Some(json!({
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": format!("{}: '{}' not in {}", input.name, pyfmt::str_of(&received), list_info),
                "extra_info": {
                    "input_name": input.name,
                    "input_config": config,
                    "received_value": received,
                },
            }));
        }
    }
    None
}

/// The widget values of a node after ComfyUI's conversions (`"8"` becomes 8 for an INT input).
pub(crate) fn converted_inputs(catalog: &Catalog, class_type: &str, inputs: &OValue) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(class) = catalog.get(class_type) else {
        return out;
    };
    for input in &class.inputs {
        let Some(raw) = inputs.get(&input.name) else {
            continue;
        };
        let converted = match &input.input_type {
            InputType::Named(t) if t == "INT" => python_int(raw).map(Num::to_value).unwrap_or(Value::Null),
            InputType::Named(t) if t == "FLOAT" => {
                python_float(raw).map(Num::to_value).unwrap_or(Value::Null)
            }
            InputType::Named(t) if t == "STRING" => Value::String(pyfmt::str_of(&raw.to_value())),
            _ => raw.to_value(),
        };
        out.insert(input.name.clone(), converted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ModelFiles;

    fn catalog() -> Catalog {
        Catalog::new(&ModelFiles {
            unet: vec![
                "broken-not-really.gguf".to_owned(),
                "zimage-random-dim3840-1L-F32.gguf".to_owned(),
            ],
            text_encoders: vec!["qwen3-4b-random-Q4_0.gguf".to_owned()],
            vae: vec!["tiny-flux-vae.safetensors".to_owned()],
            loras: vec!["ink.safetensors".to_owned()],
        })
    }

    fn run(prompt: &str) -> Result<Accepted, Rejection> {
        let prompt: OValue = serde_json::from_str(prompt).unwrap();
        validate_prompt(&catalog(), &prompt, None, &|_| false).unwrap()
    }

    #[test]
    fn an_unknown_class_names_the_class_and_the_node() {
        let rejection = run(r#"{"1": {"class_type": "NoSuchNodeXYZ", "inputs": {}}}"#).unwrap_err();
        assert_eq!(
            rejection.body(),
            json!({"error": {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNodeXYZ does not exist.", "details": "Node ID '#1'", "extra_info": {}}, "node_errors": {}})
        );
    }

    #[test]
    fn a_graph_without_an_output_node_has_no_outputs() {
        let rejection =
            run(r#"{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}"#)
                .unwrap_err();
        assert_eq!(rejection.error["type"], "prompt_no_outputs");
    }

    #[test]
    fn out_of_range_ints_report_min_and_max_like_python() {
        let rejection = run(r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 99999, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}"#)
        .unwrap_err();
        let errors = rejection.node_errors["1"]["errors"].as_array().unwrap();
        assert_eq!(errors[0]["message"], "Value 0 smaller than min of 1");
        assert_eq!(errors[1]["message"], "Value 99999 bigger than max of 16384");
        assert_eq!(rejection.node_errors["1"]["dependent_outputs"], json!(["2"]));
        assert_eq!(rejection.error["details"], "");
    }

    #[test]
    fn a_float_above_its_max_prints_python_floats() {
        let prompt = r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 20}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}"#;
        let rejection = run(prompt).unwrap_err();
        let error = &rejection.node_errors["2"]["errors"][0];
        assert_eq!(error["message"], "Value 20.0 bigger than max of 10.0");
        assert_eq!(error["extra_info"]["received_value"], json!(20.0));
    }

    #[test]
    fn strings_that_look_like_ints_are_accepted_as_python_does() {
        let prompt = r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": "8", "height": 8.9, "batch_size": true, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}"#;
        let accepted = run(prompt).unwrap();
        assert_eq!(accepted.outputs, ["2"]);
    }

    #[test]
    fn a_word_for_an_int_fails_conversion() {
        let prompt = r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": "wide", "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}"#;
        let error = &run(prompt).unwrap_err().node_errors["1"]["errors"][0];
        assert_eq!(error["type"], "invalid_input_type");
        assert_eq!(
            error["details"],
            "width, wide, invalid literal for int() with base 10: 'wide'"
        );
    }

    #[test]
    fn a_missing_required_input_is_named() {
        let prompt = r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}"#;
        let error = &run(prompt).unwrap_err().node_errors["1"]["errors"][0];
        assert_eq!(
            *error,
            json!({"type": "required_input_missing", "message": "Required input is missing", "details": "height", "extra_info": {"input_name": "height"}})
        );
    }

    #[test]
    fn a_link_to_a_missing_node_is_an_exception_during_validation() {
        let prompt =
            r#"{"2": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}}"#;
        let rejection = run(prompt).unwrap_err();
        assert_eq!(rejection.error["details"], "Exception when validating node: '99'");
        let error = &rejection.node_errors["2"]["errors"][0];
        assert_eq!(error["type"], "exception_during_validation");
        assert_eq!(error["extra_info"]["exception_type"], "KeyError");
    }

    #[test]
    fn a_link_of_the_wrong_type_is_a_return_type_mismatch() {
        let prompt = r#"{
            "1": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}"#;
        let error = &run(prompt).unwrap_err().node_errors["2"]["errors"][0];
        assert_eq!(error["type"], "return_type_mismatch");
        assert_eq!(
            error["details"],
            "images, received_type(VAE) mismatch input_type(IMAGE)"
        );
    }

    #[test]
    fn only_nodes_upstream_of_an_output_are_validated() {
        let prompt = r#"{
            "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "does-not-exist.gguf"}},
            "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}"#;
        assert_eq!(run(prompt).unwrap().outputs, ["3"]);
    }

    #[test]
    fn a_clip_type_not_offered_is_value_not_in_list() {
        let prompt = r#"{
            "1": {"class_type": "CLIPLoaderGGUF", "inputs": {"clip_name": "qwen3-4b-random-Q4_0.gguf", "type": "z_image"}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 0]}},
            "3": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "4": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "broken-not-really.gguf"}},
            "5": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 1, "steps": 8, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], "denoise": 1.0}},
            "6": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
            "7": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["6", 0]}},
            "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "x"}}}"#;
        let rejection = run(prompt).unwrap_err();
        let error = &rejection.node_errors["1"]["errors"][0];
        assert_eq!(error["type"], "value_not_in_list");
        assert_eq!(error["extra_info"]["received_value"], "z_image");
        // Nodes that are only invalid because of the loader are not listed.
        assert_eq!(rejection.node_errors.as_object().unwrap().len(), 1);
    }

    #[test]
    fn a_sampler_not_offered_is_value_not_in_list_with_the_python_list() {
        let prompt = r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "nope", "width": 8, "height": 8, "crop": "disabled"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}"#;
        let error = &run(prompt).unwrap_err().node_errors["2"]["errors"][0];
        assert_eq!(
            error["details"],
            "upscale_method: 'nope' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']"
        );
        assert_eq!(
            error["extra_info"]["input_config"],
            json!([["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], {}])
        );
    }

    #[test]
    fn a_long_option_list_is_summarised_and_its_config_left_out() {
        let prompt = r#"{
            "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "z.gguf"}},
            "2": {"class_type": "CLIPLoaderGGUF", "inputs": {"clip_name": "qwen3-4b-random-Q4_0.gguf", "type": "lumina2"}},
            "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "hi", "clip": ["2", 0]}},
            "4": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 8, "cfg": 1.0, "sampler_name": "euler_typo", "scheduler": "simple", "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
            "6": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
            "7": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["6", 0]}},
            "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "x"}}}"#;
        let rejection = run(prompt).unwrap_err();
        let error = &rejection.node_errors["5"]["errors"][0];
        assert_eq!(
            error["details"],
            "sampler_name: 'euler_typo' not in (list of length 44)"
        );
        assert_eq!(error["extra_info"]["input_config"], Value::Null);
        // The unet name is wrong too, and reported on its own node.
        assert_eq!(
            rejection.node_errors["1"]["errors"][0]["type"],
            "value_not_in_list"
        );
        assert_eq!(rejection.node_errors["5"]["dependent_outputs"], json!(["8"]));
    }

    #[test]
    fn partial_execution_targets_limit_the_outputs() {
        let prompt = r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
            "3": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}"#;
        let prompt: OValue = serde_json::from_str(prompt).unwrap();
        let accepted = validate_prompt(&catalog(), &prompt, Some(&["3".to_owned()]), &|_| false)
            .unwrap()
            .unwrap();
        assert_eq!(accepted.outputs, ["3"]);
    }

    #[test]
    fn one_good_output_is_enough_and_the_bad_one_is_reported_on_success() {
        let prompt = r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}"#;
        let accepted = run(prompt).unwrap();
        assert_eq!(accepted.outputs, ["2"]);
        assert_eq!(
            accepted.node_errors["3"]["errors"][0]["type"],
            "required_input_missing"
        );
    }

    #[test]
    fn a_prompt_that_is_not_an_object_cannot_be_processed() {
        let prompt: OValue = serde_json::from_str("[1, 2]").unwrap();
        assert!(validate_prompt(&catalog(), &prompt, None, &|_| false).is_err());
    }
}
