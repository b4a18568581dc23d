//! `map`'s expressions: the one parser (a hand-written recursive descent
//! with Python's precedences), the tree it gives, and its normal form.
//!
//! Grammar, loosest first (as in Python and NumPy):
//!
//! ```text
//! compare := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum     := term (("+" | "-") term)*
//! term    := unary (("*" | "/" | "%") unary)*
//! unary   := ("-" | "+") unary | power
//! power   := primary ("**" unary)?
//! primary := NUMBER | NAME | NAME "(" compare ("," compare)* ")" | "(" compare ")"
//! ```
//!
//! Names are inputs ([`INPUTS`]), constants (`pi`, `e`, `inf`, `nan`) or
//! functions ([`Func`]). Comparisons do not chain (`x < y < z` is refused:
//! NumPy refuses it for arrays too). Errors name the column, counted in
//! characters from 1. Numbers are folded: a call whose arguments are all
//! numbers becomes its value, computed as the CPU computes it.

use std::fmt;

use super::scalar::{self, Func};
use crate::error::{Error, Result};

/// The inputs an expression may name, in the order their variables are
/// numbered.
pub const INPUTS: [&str; 6] = ["x", "y", "z", "w", "u", "v"];

/// Characters an expression may have at most.
pub const MAX_CHARS: usize = 10_000;
/// Nesting (parentheses, calls, unary signs, powers) at most: the parser
/// recurses once per level.
const MAX_DEPTH: usize = 64;
/// Operations an expression may hold at most.
pub const MAX_OPS: usize = 512;
/// Numbers (after folding) an expression may hold at most: the GPU takes
/// them in one small uniform block.
pub const MAX_NUMBERS: usize = 64;

/// An expression tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Input `INPUTS[i]`.
    Var(usize),
    /// A number (as f32).
    Num(f32),
    /// An operation on its arguments ([`Func::arity`] of them).
    Call(Func, Vec<Expr>),
}

impl Func {
    /// The function called `name` in an expression (operators have no
    /// name there).
    fn by_name(name: &str) -> Option<Func> {
        const OPERATORS: &[Func] = &[
            Func::Neg,
            Func::Add,
            Func::Sub,
            Func::Mul,
            Func::Div,
            Func::Rem,
            Func::Lt,
            Func::Le,
            Func::Gt,
            Func::Ge,
            Func::Eq,
            Func::Ne,
        ];
        Func::ALL
            .iter()
            .copied()
            .find(|f| f.name() == name && !OPERATORS.contains(f))
    }
}

impl Expr {
    /// Parses `text`; errors say `expr: … at column N`.
    pub fn parse(text: &str) -> Result<Expr> {
        let chars = text.chars().count();
        if chars > MAX_CHARS {
            return Err(Error::bad(format!(
                "parameter 'expr' of map is {chars} characters long; at most {MAX_CHARS} are allowed"
            )));
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            depth: 0,
            ops: 0,
        };
        let e = p.compare()?;
        match p.peek() {
            Tok::End => {}
            Tok::Compare(_) => {
                return Err(p.error(
                    "comparisons do not chain (write where(x < y, y < z, 0), or compare two values at a time)"
                        .into(),
                ));
            }
            t => return Err(p.error(format!("unexpected {}", t.describe()))),
        }
        if e.numbers() > MAX_NUMBERS {
            return Err(Error::bad(format!(
                "expr: more than {MAX_NUMBERS} numbers; put some in an input"
            )));
        }
        Ok(e)
    }

    /// The expression with variable `i` replaced by `values[i]` where
    /// that is given, numbers folded again.
    pub fn substitute(&self, values: &[Option<f32>]) -> Expr {
        match self {
            Expr::Var(i) => values[*i].map_or(Expr::Var(*i), Expr::Num),
            Expr::Num(v) => Expr::Num(*v),
            Expr::Call(f, args) => Expr::call(*f, args.iter().map(|a| a.substitute(values)).collect()),
        }
    }

    /// Which inputs it reads (by index in [`INPUTS`]).
    pub fn vars(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Var(i) = e
                && !out.contains(i)
            {
                out.push(*i);
            }
        });
        out.sort_unstable();
        out
    }

    /// Operations in it.
    pub fn ops(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |e| n += usize::from(matches!(e, Expr::Call(..))));
        n
    }

    /// Numbers in it.
    fn numbers(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |e| n += usize::from(matches!(e, Expr::Num(_))));
        n
    }

    /// Calls `f` on every node, parents before children.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        if let Expr::Call(_, args) = self {
            for a in args {
                a.visit(f);
            }
        }
    }

    /// `f` applied to `args`, folded to a number when they all are.
    fn call(f: Func, args: Vec<Expr>) -> Expr {
        let nums: Option<Vec<f32>> = args
            .iter()
            .map(|a| match a {
                Expr::Num(v) => Some(*v),
                _ => None,
            })
            .collect();
        match nums {
            Some(v) => Expr::Num(scalar::apply(f, &v)),
            None => Expr::Call(f, args),
        }
    }
}

/// The normal form: every operation as a call, numbers by their bits
/// (`mul(x, 2)`, `add(mul(x, 2), sin(y))`); equal expressions print
/// alike, whatever their spacing, parentheses or spelling of numbers.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Var(i) => f.write_str(INPUTS[*i]),
            // `{:?}` of an f32 prints the shortest text that reads back to
            // the same bits (and `NaN`, `inf`, `-0.0`).
            Expr::Num(v) => write!(f, "{v:?}"),
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A token and the column it starts at.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f32),
    Name(String),
    /// `+ - * / % **`, as its text.
    Op(&'static str),
    Compare(Func),
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(v) => format!("number {v}"),
            Tok::Name(n) => format!("'{n}'"),
            Tok::Op(o) => format!("'{o}'"),
            Tok::Compare(f) => format!("comparison '{}'", compare_text(*f)),
            Tok::Open => "'('".into(),
            Tok::Close => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::End => "end of expression".into(),
        }
    }
}

fn compare_text(f: Func) -> &'static str {
    match f {
        Func::Lt => "<",
        Func::Le => "<=",
        Func::Gt => ">",
        Func::Ge => ">=",
        Func::Eq => "==",
        _ => "!=",
    }
}

fn at_column(message: impl fmt::Display, column: usize) -> Error {
    Error::bad(format!("expr: {message} at column {column}"))
}

/// Splits `text` into tokens with their columns.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            '0'..='9' | '.' => {
                let len = number_len(&chars[i..]);
                let s: String = chars[i..i + len].iter().collect();
                let v: f32 = s
                    .parse()
                    .map_err(|_| at_column(format!("'{s}' is not a number"), column))?;
                (Tok::Num(v), len)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                (Tok::Name(chars[i..i + len].iter().collect()), len)
            }
            '*' if next == Some('*') => (Tok::Op("**"), 2),
            '+' => (Tok::Op("+"), 1),
            '-' => (Tok::Op("-"), 1),
            '*' => (Tok::Op("*"), 1),
            '/' => (Tok::Op("/"), 1),
            '%' => (Tok::Op("%"), 1),
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '<' if next == Some('=') => (Tok::Compare(Func::Le), 2),
            '>' if next == Some('=') => (Tok::Compare(Func::Ge), 2),
            '=' if next == Some('=') => (Tok::Compare(Func::Eq), 2),
            '!' if next == Some('=') => (Tok::Compare(Func::Ne), 2),
            '<' => (Tok::Compare(Func::Lt), 1),
            '>' => (Tok::Compare(Func::Gt), 1),
            '=' => return Err(at_column("'=' is not an operator (did you mean '=='?)", column)),
            c => return Err(at_column(format!("unexpected character '{c}'"), column)),
        };
        out.push((tok, column));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

/// Length of the number at the start of `s`: digits, a point, digits,
/// and an exponent (`e`, a sign, digits) when one follows.
fn number_len(s: &[char]) -> usize {
    let digits = |from: usize| s[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut n = digits(0);
    if s.get(n) == Some(&'.') {
        n += 1 + digits(n + 1);
    }
    if matches!(s.get(n), Some('e' | 'E')) {
        let sign = usize::from(matches!(s.get(n + 1), Some('+' | '-')));
        let exp = digits(n + 1 + sign);
        if exp > 0 {
            n += 1 + sign + exp;
        }
    }
    n
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
    ops: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at].0
    }

    fn column(&self) -> usize {
        self.tokens[self.at].1
    }

    fn bump(&mut self) -> Tok {
        let t = self.tokens[self.at].0.clone();
        if t != Tok::End {
            self.at += 1;
        }
        t
    }

    fn error(&self, message: String) -> Error {
        at_column(message, self.column())
    }

    /// Enters one level of nesting.
    fn nest(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} deep")));
        }
        Ok(())
    }

    /// Builds an operation, counting it.
    fn call(&mut self, f: Func, args: Vec<Expr>) -> Result<Expr> {
        self.ops += 1;
        if self.ops > MAX_OPS {
            return Err(self.error(format!("more than {MAX_OPS} operations")));
        }
        Ok(Expr::call(f, args))
    }

    fn compare(&mut self) -> Result<Expr> {
        let left = self.sum()?;
        if let Tok::Compare(f) = *self.peek() {
            self.bump();
            let right = self.sum()?;
            return self.call(f, vec![left, right]);
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Expr> {
        let mut e = self.term()?;
        loop {
            let f = match self.peek() {
                Tok::Op("+") => Func::Add,
                Tok::Op("-") => Func::Sub,
                _ => return Ok(e),
            };
            self.bump();
            let right = self.term()?;
            e = self.call(f, vec![e, right])?;
        }
    }

    fn term(&mut self) -> Result<Expr> {
        let mut e = self.unary()?;
        loop {
            let f = match self.peek() {
                Tok::Op("*") => Func::Mul,
                Tok::Op("/") => Func::Div,
                Tok::Op("%") => Func::Rem,
                _ => return Ok(e),
            };
            self.bump();
            let right = self.unary()?;
            e = self.call(f, vec![e, right])?;
        }
    }

    fn unary(&mut self) -> Result<Expr> {
        let negate = match self.peek() {
            Tok::Op("-") => true,
            Tok::Op("+") => false,
            _ => return self.power(),
        };
        self.bump();
        self.nest()?;
        let e = self.unary()?;
        self.depth -= 1;
        if negate { self.call(Func::Neg, vec![e]) } else { Ok(e) }
    }

    fn power(&mut self) -> Result<Expr> {
        let base = self.primary()?;
        if *self.peek() != Tok::Op("**") {
            return Ok(base);
        }
        self.bump();
        self.nest()?;
        let exponent = self.unary()?;
        self.depth -= 1;
        self.call(Func::Pow, vec![base, exponent])
    }

    fn primary(&mut self) -> Result<Expr> {
        let column = self.column();
        match self.bump() {
            Tok::Num(v) => Ok(Expr::Num(v)),
            Tok::Open => {
                self.nest()?;
                let e = self.compare()?;
                self.depth -= 1;
                self.expect_close(column)?;
                Ok(e)
            }
            Tok::Name(name) if *self.peek() == Tok::Open => self.function(&name, column),
            Tok::Name(name) => {
                if let Some(i) = INPUTS.iter().position(|n| *n == name) {
                    return Ok(Expr::Var(i));
                }
                let v = match name.as_str() {
                    "pi" => std::f32::consts::PI,
                    "e" => std::f32::consts::E,
                    "inf" => f32::INFINITY,
                    "nan" => f32::NAN,
                    _ if Func::by_name(&name).is_some() => {
                        return Err(at_column(
                            format!("'{name}' is a function: write {name}(...)"),
                            column,
                        ));
                    }
                    _ => {
                        return Err(at_column(
                            format!(
                                "unknown name '{name}' (inputs are {}; constants pi, e, inf, nan)",
                                INPUTS.join(", ")
                            ),
                            column,
                        ));
                    }
                };
                Ok(Expr::Num(v))
            }
            Tok::End => Err(at_column("the expression ends too early", column)),
            t => Err(at_column(format!("unexpected {}", t.describe()), column)),
        }
    }

    /// A call of function `name` (at `column`), its '(' next.
    fn function(&mut self, name: &str, column: usize) -> Result<Expr> {
        let Some(f) = Func::by_name(name) else {
            let known: Vec<&str> = Func::ALL
                .iter()
                .filter(|f| Func::by_name(f.name()).is_some())
                .map(|f| f.name())
                .collect();
            return Err(at_column(
                format!("unknown function '{name}' (functions: {})", known.join(" ")),
                column,
            ));
        };
        let open = self.column();
        self.bump();
        self.nest()?;
        let mut args = Vec::new();
        if *self.peek() != Tok::Close {
            loop {
                args.push(self.compare()?);
                if *self.peek() != Tok::Comma {
                    break;
                }
                self.bump();
            }
        }
        self.depth -= 1;
        self.expect_close(open)?;
        if args.len() != f.arity() {
            let s = if f.arity() == 1 { "" } else { "s" };
            return Err(at_column(
                format!(
                    "{name} takes {} argument{s}, not {}",
                    f.arity(),
                    args.len()
                ),
                column,
            ));
        }
        self.call(f, args)
    }

    /// The ')' that closes the '(' at column `open`.
    fn expect_close(&mut self, open: usize) -> Result<()> {
        match self.peek() {
            Tok::Close => {
                self.bump();
                Ok(())
            }
            Tok::End => Err(self.error(format!("'(' at column {open} is not closed"))),
            t => Err(self.error(format!("expected ')' or ',' but found {}", t.describe()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(text: &str) -> String {
        Expr::parse(text).unwrap().to_string()
    }

    fn error(text: &str) -> String {
        Expr::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn precedence_follows_python() {
        assert_eq!(normal("x * 2 + sin(y)"), "add(mul(x, 2.0), sin(y))");
        assert_eq!(normal("x + y * z"), "add(x, mul(y, z))");
        assert_eq!(normal("x - y - z"), "sub(sub(x, y), z)");
        assert_eq!(normal("x / y % z"), "rem(div(x, y), z)");
        assert_eq!(normal("-x ** 2"), "neg(pow(x, 2.0))");
        assert_eq!(normal("x ** -y"), "pow(x, neg(y))");
        assert_eq!(normal("x ** y ** z"), "pow(x, pow(y, z))");
        assert_eq!(normal("x + 1 < y * 2"), "lt(add(x, 1.0), mul(y, 2.0))");
        assert_eq!(normal("(x + y) * z"), "mul(add(x, y), z)");
        assert_eq!(normal("--x"), "neg(neg(x))");
        assert_eq!(normal("+x"), "x");
        assert_eq!(
            normal("where(x >= 0, sqrt(x), clamp(y, -1, 1.5e0))"),
            "where(ge(x, 0.0), sqrt(x), clamp(y, -1.0, 1.5))"
        );
    }

    #[test]
    fn numbers_fold_and_normalise() {
        assert_eq!(normal("x*2"), normal("x * 2.0"));
        assert_eq!(normal("x * (1 + 1)"), "mul(x, 2.0)");
        assert_eq!(normal("2 ** 3 + x"), "add(8.0, x)");
        assert_eq!(normal(".5e1 + x"), "add(5.0, x)");
        assert_eq!(normal("x + 1e39"), "add(x, inf)");
        assert_eq!(normal("x * pi"), format!("mul(x, {:?})", std::f32::consts::PI));
        assert_eq!(normal("nan"), "NaN");
        assert_eq!(normal("-0"), "-0.0");
        assert_eq!(Expr::parse("x + y * x").unwrap().vars(), vec![0, 1]);
        assert_eq!(Expr::parse("v").unwrap().vars(), vec![5]);
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(error("x * 2 + q"), "expr: unknown name 'q' (inputs are x, y, z, w, u, v; constants pi, e, inf, nan) at column 9");
        assert!(error("x +").contains("ends too early at column 4"), "{}", error("x +"));
        assert!(error("(x + 1").contains("'(' at column 1 is not closed at column 7"));
        assert!(error("x + 1)").contains("unexpected ')' at column 6"));
        assert!(error("foo(x)").contains("unknown function 'foo'"));
        assert!(error("sin(x, y)").contains("sin takes 1 argument, not 2 at column 1"));
        assert!(error("clamp(x)").contains("clamp takes 3 arguments, not 1"));
        assert!(error("x = 1").contains("did you mean '=='?) at column 3"));
        let chained = error("x < y < z");
        assert!(chained.contains("do not chain") && chained.ends_with("at column 7"), "{chained}");
        assert!(error("x $ y").contains("unexpected character '$' at column 3"));
        assert!(error("sin").contains("'sin' is a function"));
        assert!(error("").contains("ends too early at column 1"));
        assert!(error("x y").contains("unexpected 'y' at column 3"));
        assert!(error("1.2.3").contains("unexpected number"));
        assert!(error("add(x, y)").contains("unknown function 'add'"));
    }

    #[test]
    fn hostile_sizes_are_refused_without_overflowing_the_stack() {
        let deep = format!("{}x{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(error(&deep).contains("characters long"));
        let deep = format!("{}x{}", "(".repeat(1000), ")".repeat(1000));
        assert!(error(&deep).contains("nested more than"));
        assert!(error(&"-".repeat(5000)).contains("nested more than"));
        let long = vec!["x"; 2000].join(" + ");
        assert!(error(&long).contains("more than 512 operations"));
        let many = (0..100).map(|i| format!("x * {i}.5")).collect::<Vec<_>>().join(" + ");
        assert!(error(&many).contains("more than 64 numbers"));
    }
}
