//! `types`: the event-type catalogue (API.md section 11): list, get, put, delete, and a local
//! check of a payload against a type's schema.

use nexus_client::{Admin, DeclaredType, DeclaredTypePut, Draft};
use serde_json::{Value, json};

use super::publish::parse_json;
use super::{list_out, pages};
use crate::cli::{TypePutArgs, TypesCommand};
use crate::exit::usage;
use crate::output::{Out, table};

const HEADERS: [&str; 6] = [
    "NAME",
    "DEPRECATED",
    "SCHEMA",
    "EXAMPLES",
    "UPDATED AT",
    "DESCRIPTION",
];

fn rows(t: &DeclaredType) -> Vec<String> {
    vec![
        t.name.clone(),
        t.deprecated.to_string(),
        if t.schema.is_some() { "yes" } else { "no" }.to_owned(),
        t.examples.len().to_string(),
        t.updated_at.to_string(),
        t.description.clone(),
    ]
}

fn pretty(value: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

fn one(out: &mut Out, t: &DeclaredType) -> anyhow::Result<()> {
    if out.json() {
        return out.json_value(&serde_json::to_value(t)?);
    }
    out.text(&table(&HEADERS, vec![rows(t)]))?;
    match &t.schema {
        Some(schema) => out.line(&format!("schema:\n{}", pretty(schema)?))?,
        None => out.line("schema: none (any payload)")?,
    }
    for (i, example) in t.examples.iter().enumerate() {
        out.line(&format!("example {}:\n{}", i + 1, pretty(example)?))?;
    }
    Ok(())
}

/// The text of a file, or of stdin for `-`.
fn read(what: &str, path: &str) -> anyhow::Result<Value> {
    let text = if path == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read {what} {path}: {e}")))?
    };
    parse_json(&format!("{what} {path}"), &text)
}

/// The body of the PUT: the `--file` body (or the default one), then the flags over it.
fn body(args: &TypePutArgs) -> anyhow::Result<DeclaredTypePut> {
    if args.file.as_deref() == Some("-") && args.schema.as_deref() == Some("-") {
        return Err(usage("--file and --schema cannot both read stdin"));
    }
    let mut body = match &args.file {
        Some(path) => serde_json::from_value(read("--file", path)?).map_err(|e| {
            usage(format!(
                "--file {path} is not an event type body ({{\"description\"?, \"schema\"?, \"examples\"?, \"deprecated\"?}}): {e}"
            ))
        })?,
        None => DeclaredTypePut::default(),
    };
    if let Some(path) = &args.schema {
        body.schema = Some(read("--schema", path)?);
    }
    if let Some(description) = &args.description {
        body.description = description.clone();
    }
    if !args.examples.is_empty() {
        body.examples = args
            .examples
            .iter()
            .enumerate()
            .map(|(i, e)| parse_json(&format!("--example {}", i + 1), e))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(deprecated) = args.deprecated {
        body.deprecated = deprecated;
    }
    Ok(body)
}

pub(crate) fn types(admin: &Admin, c: TypesCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        TypesCommand::List(list) => {
            let (items, next) = pages(&list, |p| admin.event_types(p))?;
            list_out(out, &items, next, &HEADERS, rows)
        }
        TypesCommand::Get { name } => one(out, &admin.event_type(&name)?),
        TypesCommand::Put(args) => {
            let declared = admin.put_event_type(&args.name, &body(&args)?)?;
            if out.json() {
                return out.json_value(&json!({
                    "created": declared.created,
                    "eventType": declared.event_type,
                }));
            }
            let verb = if declared.created {
                "declared"
            } else {
                "replaced"
            };
            out.line(&format!("{verb} event type {}", declared.event_type.name))
        }
        TypesCommand::Delete { name } => {
            let n = admin.delete_event_type(&name)?;
            if out.json() {
                out.json_value(&json!({ "deleted": n }))
            } else {
                out.line(&format!("deleted event type {name}"))
            }
        }
        TypesCommand::Check { name, payload } => {
            let payload = match payload.as_deref() {
                None => json!({}),
                Some("-") => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)?;
                    parse_json("the payload on stdin", &text)?
                }
                Some(text) => parse_json("the payload", text)?,
            };
            let draft = Draft::of_type(&name)?.payload(payload);
            let Some(schema) = admin.payload_schema(&name)? else {
                return if out.json() {
                    out.json_value(&json!({ "valid": true, "schema": false }))
                } else {
                    out.line(&format!(
                        "{name} declares no schema: any payload is accepted"
                    ))
                };
            };
            match draft.check(&schema) {
                Ok(()) => {
                    if out.json() {
                        out.json_value(&json!({ "valid": true, "schema": true }))
                    } else {
                        out.line(&format!("valid {name} payload"))
                    }
                }
                Err(refused) => {
                    if let Some((pointer, errors)) = refused.schema_violations() {
                        if out.json() {
                            out.json_value(&json!({ "valid": false, "schema": true,
                                "pointer": pointer, "errors": errors }))?;
                        } else {
                            let rows = errors
                                .iter()
                                .map(|e| vec![e.pointer.clone(), e.message.clone()])
                                .collect();
                            out.text(&table(&["POINTER", "MESSAGE"], rows))?;
                        }
                    }
                    Err(refused.into())
                }
            }
        }
    }
}
