//! Values shared by the services, parsed once at the edge so the rest of the
//! code never sees an invalid one.

use std::{borrow::Cow, fmt, marker::PhantomData};

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// A product identifier: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(String);

impl ProductId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(format!(
                "product_id must be 1 to {} characters, got {}",
                Self::MAX_LEN,
                s.len()
            ));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("product_id may contain only A-Z a-z 0-9 . _ -".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text a person typed, for the field `K` names: `K::MIN` to `K::MAX`
/// characters, no control characters. Only a JSON string is one
/// (poem-openapi's `String` would also take `false` or `7` as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text<K>(String, PhantomData<K>);

/// The field a [`Text`] is for, and its length.
pub trait TextField {
    const NAME: &'static str;
    const MIN: usize;
    const MAX: usize;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserIdField {}

impl TextField for UserIdField {
    const NAME: &'static str = "user_id";
    const MIN: usize = 1;
    const MAX: usize = 255;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProductNameField {}

impl TextField for ProductNameField {
    const NAME: &'static str = "name";
    const MIN: usize = 0;
    const MAX: usize = 200;
}

/// Who places an order: 1 to 255 characters, no control characters.
pub type UserId = Text<UserIdField>;
/// A product's name: up to 200 characters, no control characters.
pub type ProductName = Text<ProductNameField>;

impl<K: TextField> Text<K> {
    pub fn parse(s: &str) -> Result<Self, String> {
        let chars = s.chars().count();
        if !(K::MIN..=K::MAX).contains(&chars) {
            return Err(format!(
                "{} must be {} to {} characters, got {chars}",
                K::NAME,
                K::MIN,
                K::MAX
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(format!("{} must not contain control characters", K::NAME));
        }
        Ok(Self(s.to_owned(), PhantomData))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// How many units one order line takes: 1 ..= `Quantity::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity(i32);

impl Quantity {
    pub const MAX: i32 = 1000;

    pub fn new(n: i64) -> Result<Self, String> {
        if (1..=i64::from(Self::MAX)).contains(&n) {
            Ok(Self(n as i32))
        } else {
            Err(format!(
                "quantity must be between 1 and {}, got {n}",
                Self::MAX
            ))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// Money in cents, never negative. The database keeps NUMERIC(10,2); the API
/// speaks whole cents so no float ever carries money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cents(i64);

impl Cents {
    /// NUMERIC(10,2) holds at most 99,999,999.99.
    pub const MAX: i64 = 9_999_999_999;

    pub fn new(n: i64) -> Result<Self, String> {
        if (0..=Self::MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!(
                "amount_cents must be between 0 and {}, got {n}",
                Self::MAX
            ))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

fn schema(ty: &'static str, f: impl FnOnce(&mut MetaSchema)) -> MetaSchemaRef {
    let mut s = MetaSchema::new(ty);
    f(&mut s);
    MetaSchemaRef::Inline(Box::new(s))
}

macro_rules! openapi_scalar {
    (impl [$($generics:tt)*] $t:ty, $name:expr, $schema:expr) => {
        impl<$($generics)*> Type for $t {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                $schema
            }

            fn as_raw_value(&self) -> Option<&Self::RawValueType> {
                Some(self)
            }

            fn raw_element_iter<'a>(
                &'a self,
            ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }
    };
    ($t:ty, $name:expr, $schema:expr) => {
        openapi_scalar!(impl [] $t, $name, $schema);
    };
}

openapi_scalar!(
    ProductId,
    "ProductId",
    schema("string", |s| {
        s.min_length = Some(1);
        s.max_length = Some(ProductId::MAX_LEN);
        s.pattern = Some("^[A-Za-z0-9._-]+$".into());
        s.example = Some(Value::String("PROD-1".into()));
    })
);
openapi_scalar!(
    Quantity,
    "Quantity",
    schema("integer", |s| {
        s.format = Some("int32");
        s.minimum = Some(1.0);
        s.maximum = Some(f64::from(Quantity::MAX));
        s.example = Some(Value::from(1));
    })
);
openapi_scalar!(
    Cents,
    "Cents",
    schema("integer", |s| {
        s.format = Some("int64");
        s.minimum = Some(0.0);
        s.maximum = Some(Cents::MAX as f64);
        s.example = Some(Value::from(1999));
    })
);

openapi_scalar!(
    impl [K: TextField + Send + Sync] Text<K>,
    format!("string({}..{})", K::MIN, K::MAX),
    schema("string", |s| {
        s.min_length = Some(K::MIN);
        s.max_length = Some(K::MAX);
        // JSON Schema's pattern is an ECMAScript regex: \p{Cc} would
        // need the `u` flag, which OpenAPI tools do not all set.
        s.pattern = Some(if K::MIN == 0 {
            "^[^\\x00-\\x1f\\x7f-\\x9f]*$".into()
        } else {
            "^[^\\x00-\\x1f\\x7f-\\x9f]+$".into()
        });
    })
);

impl<K: TextField + Send + Sync> ParseFromJSON for Text<K> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Self::parse(&s).map_err(ParseError::custom),
            other => Err(ParseError::custom(format!(
                "{} must be a string, not {}",
                K::NAME,
                json_kind(&other)
            ))),
        }
    }
}

impl<K: TextField + Send + Sync> ToJSON for Text<K> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl ParseFromJSON for ProductId {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Self::parse(&s).map_err(ParseError::custom),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ParseFromParameter for ProductId {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse(value).map_err(ParseError::custom)
    }
}

impl ToJSON for ProductId {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

fn parse_integer<T>(value: Option<Value>, make: fn(i64) -> Result<T, String>) -> ParseResult<T>
where
    T: Type,
{
    match value.unwrap_or_default() {
        Value::Number(n) => match n.as_i64() {
            Some(i) => make(i).map_err(ParseError::custom),
            None => Err(ParseError::custom(format!(
                "expected a whole number, got {n}"
            ))),
        },
        other => Err(ParseError::expected_type(other)),
    }
}

impl ParseFromJSON for Quantity {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        parse_integer(value, Self::new)
    }
}

impl ToJSON for Quantity {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.0))
    }
}

impl ParseFromJSON for Cents {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        parse_integer(value, Self::new)
    }
}

impl ToJSON for Cents {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids() {
        assert!(ProductId::parse("PROD-1").is_ok());
        assert!(ProductId::parse("").is_err());
        assert!(ProductId::parse("a b").is_err());
        assert!(ProductId::parse(&"x".repeat(65)).is_err());
        assert!(ProductId::parse("../etc").is_err());
    }

    #[test]
    fn quantities() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert_eq!(Quantity::new(7).map(Quantity::get), Ok(7));
        assert!(Quantity::new(1001).is_err());
        assert!(Quantity::new(i64::MAX).is_err());
    }

    #[test]
    fn text_is_a_json_string_of_printable_characters() {
        use serde_json::json;
        assert!(UserId::parse_from_json(Some(json!("alice"))).is_ok());
        assert!(UserId::parse_from_json(Some(json!(""))).is_err());
        assert!(UserId::parse_from_json(Some(json!(false))).is_err());
        assert!(UserId::parse_from_json(Some(json!(7))).is_err());
        assert!(UserId::parse_from_json(Some(json!("a\u{7}b"))).is_err());
        assert!(UserId::parse_from_json(Some(json!("é".repeat(255)))).is_ok());
        assert!(UserId::parse_from_json(Some(json!("x".repeat(256)))).is_err());
        assert!(ProductName::parse_from_json(Some(json!(""))).is_ok());
        assert!(ProductName::parse_from_json(Some(json!("a\u{85}b"))).is_err());
    }

    #[test]
    fn json_rejects_fractions_and_strings() {
        assert!(Quantity::parse_from_json(Some(serde_json::json!(1.5))).is_err());
        assert!(Quantity::parse_from_json(Some(serde_json::json!("1"))).is_err());
        assert!(Cents::parse_from_json(Some(serde_json::json!(-1))).is_err());
    }
}
