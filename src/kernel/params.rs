//! Typed access to a job's parameters, which arrive as text (`-p a=2.5`).
//!
//! Each accessor names the kernel, the parameter and the offending value in
//! its error, so the user sees exactly which `-p` to fix.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A job's parameters, checked against its kernel's signature.
#[derive(Debug)]
pub struct Params<'a> {
    kernel: &'static str,
    map: &'a BTreeMap<String, String>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(kernel: &'static str, map: &'a BTreeMap<String, String>) -> Self {
        Params { kernel, map }
    }

    fn parse<T: FromStr>(&self, name: &str, what: &str) -> Result<Option<T>> {
        let Some(text) = self.map.get(name) else {
            return Ok(None);
        };
        text.trim().parse().map(Some).map_err(|_| {
            Error::bad(format!(
                "parameter '{name}' of {}: '{text}' is not {what}",
                self.kernel
            ))
        })
    }

    fn required<T>(&self, name: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| {
            Error::bad(format!(
                "{} needs parameter '{name}' (it has no default)",
                self.kernel
            ))
        })
    }

    /// A finite `f32`, or `default` when absent.
    pub fn f32_or(&self, name: &str, default: f32) -> Result<f32> {
        let v = self.parse::<f32>(name, "a number")?.unwrap_or(default);
        if !v.is_finite() {
            return Err(Error::bad(format!(
                "parameter '{name}' of {}: {v} is not a finite number",
                self.kernel
            )));
        }
        Ok(v)
    }

    /// A finite number read in double precision, if given.
    pub fn f64_opt(&self, name: &str) -> Result<Option<f64>> {
        let v = self.parse::<f64>(name, "a number")?;
        if let Some(v) = v.filter(|v| !v.is_finite()) {
            return Err(Error::bad(format!(
                "parameter '{name}' of {}: {v} is not a finite number",
                self.kernel
            )));
        }
        Ok(v)
    }

    /// Text that must be given.
    pub fn text(&self, name: &str) -> Result<&'a str> {
        let v = self.map.get(name).map(String::as_str);
        self.required(name, v)
    }

    /// `true` or `false`, or `default` when absent.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        let text = if default { "true" } else { "false" };
        Ok(self.choice(name, &["false", "true"], text)? == "true")
    }

    /// A `u32`, or `default` when absent.
    pub fn u32_or(&self, name: &str, default: u32) -> Result<u32> {
        Ok(self
            .parse(name, "a whole number from 0 to 4294967295")?
            .unwrap_or(default))
    }

    /// A `u32` that must be given.
    pub fn u32_required(&self, name: &str) -> Result<u32> {
        let v = self.parse(name, "a whole number from 0 to 4294967295")?;
        self.required(name, v)
    }

    /// One of a fixed set of words, or `default` when absent.
    pub fn choice<'c>(&self, name: &str, options: &[&'c str], default: &'c str) -> Result<&'c str> {
        match self.map.get(name) {
            None => Ok(default),
            Some(text) => options
                .iter()
                .find(|o| **o == text.trim())
                .copied()
                .ok_or_else(|| {
                    Error::bad(format!(
                        "parameter '{name}' of {}: '{text}' is not one of {}",
                        self.kernel,
                        options.join(", ")
                    ))
                }),
        }
    }
}

/// A parameter given as JSON (`2.5`, `"max"`, `true`) as the text the
/// kernels parse; arrays and objects are refused, naming the parameter.
pub fn param_text(name: &str, value: &serde_json::Value) -> Result<String> {
    match value {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(Error::bad(format!(
            "parameter '{name}' must be a number, a string or a boolean, not {other}"
        ))),
    }
}

/// Reads parameters given as JSON (a service request, a batch line, a
/// pipeline step): a map whose values are numbers, strings, booleans (or
/// null, refused later by [`param_text`]). An array or an object is
/// refused at its first byte, never read whole: a parameter that is a
/// 100 MB array must not cost gigabytes before it is refused.
pub fn scalar_params<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, serde_json::Value>, D::Error> {
    use serde::de::{DeserializeSeed, MapAccess, Visitor};
    use std::fmt;

    struct Map;
    struct Scalar<'n>(&'n str);

    impl<'de> Visitor<'de> for Map {
        type Value = BTreeMap<String, serde_json::Value>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("parameters: an object of numbers, strings or booleans")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut params = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let value = map.next_value_seed(Scalar(&name))?;
                params.insert(name, value);
            }
            Ok(params)
        }
    }

    impl<'de> DeserializeSeed<'de> for Scalar<'_> {
        type Value = serde_json::Value;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Scalar<'_> {
        type Value = serde_json::Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "parameter '{}' to be a number, a string or a boolean",
                self.0
            )
        }
        fn visit_bool<E>(self, v: bool) -> std::result::Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> std::result::Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(serde_json::Value::Null)
        }
    }

    d.deserialize_map(Map)
}
