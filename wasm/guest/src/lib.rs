//! `ember-udf`: write Ember functions in plain Rust, compile them to a
//! WebAssembly module, and load the module into a running Ember session or
//! cluster (`CREATE FUNCTION LIBRARY … LANGUAGE wasm AS 'file.wasm'`).
//!
//! ```ignore
//! fn fare_band(fare: f64) -> String {
//!     if fare < 10.0 { "low".to_string() } else { "high".to_string() }
//! }
//! fn words(text: String) -> Vec<String> {
//!     text.split_whitespace().map(str::to_lowercase).collect()
//! }
//! fn longest(a: String, b: String) -> String {
//!     if b.len() > a.len() { b } else { a }
//! }
//!
//! ember_udf::library! {
//!     scalar fare_band(f64) -> String;
//!     flat words(String) -> String;
//!     reduce longest(String);
//! }
//! ```
//!
//! Build it as a `cdylib` for `wasm32-unknown-unknown`
//! (`cargo build --release --target wasm32-unknown-unknown`).
//!
//! Kinds of function, as [`library!`] declares them:
//!
//! * `scalar f(A, B, …) -> R;` with `fn f(a: A, b: B, …) -> R`: one value
//!   per row; a NULL argument gives NULL without calling `f`;
//! * `partial f(A, …) -> R;` with `fn f(…) -> Option<R>`: `None` is NULL
//!   (a parser, say);
//! * `flat f(A) -> R;` with `fn f(a: A) -> Vec<R>`: a list per row, which
//!   `Dataset::flat_map` or SQL `unnest` turns into one row per value;
//! * `reduce f(T);` with `fn f(a: T, b: T) -> T`: an aggregate folding a
//!   column's non-NULL values (associative and commutative);
//! * `partitions f -> (name: T, …);` with
//!   `fn f(input: &Batch) -> Result<Vec<ColumnWriter>, String>`: a whole
//!   partition in, columns of the declared names and types out
//!   (`Dataset::map_partitions`).
//!
//! Value types: `bool`, `i32`, `i64`, `f32`, `f64`, `String`, [`Date`] and
//! [`Decimal`]. Values cross into the module a batch at a time, in the
//! columnar layout described in Ember's `wasm/README.md`; the crate has no
//! dependencies and builds with Rust 1.63 or later.
//!
//! A panic fails the query with its message and the function's name. The
//! host bounds each call's time and memory; the module cannot reach files,
//! the network or the clock (it imports nothing).

use std::cell::RefCell;

/// The version of the boundary between host and module this crate speaks.
pub const ABI_VERSION: i32 = 1;

const TAG_BOOL: u8 = 1;
const TAG_I32: u8 = 2;
const TAG_I64: u8 = 3;
const TAG_F32: u8 = 4;
const TAG_F64: u8 = 5;
const TAG_STR: u8 = 6;
const TAG_DATE: u8 = 7;
const TAG_DECIMAL: u8 = 8;

/// A date: days since 1970-01-01 (SQL `DATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i32);

/// A decimal of precision `P` and scale `S`: the unscaled value
/// (`DECIMAL(15, 2)` holds 12.34 as `Decimal::<15, 2>(1234)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal<const P: u8, const S: u8>(pub i128);

/// One column of a batch the host sent.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    name: &'a str,
    tag: u8,
    rows: usize,
    validity: Option<&'a [u8]>,
    offsets: &'a [u8],
    data: &'a [u8],
}

impl<'a> Column<'a> {
    /// The column's name (empty for a function's arguments).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Its number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Whether row `row` is NULL.
    pub fn is_null(&self, row: usize) -> bool {
        self.validity.map_or(false, |v| v[row] == 0)
    }

    /// Row `row` as a `T`, `None` when NULL or when the column is not a
    /// `T` column.
    pub fn get<T: Value>(&self, row: usize) -> Option<T> {
        if self.tag != T::TAG || self.is_null(row) {
            None
        } else {
            Some(T::read(self, row))
        }
    }

    /// Every row as a `T` (see [`Column::get`]).
    pub fn values<T: Value>(&self) -> Vec<Option<T>> {
        (0..self.rows).map(|row| self.get(row)).collect()
    }

    fn fixed(&self, row: usize, width: usize) -> &'a [u8] {
        &self.data[row * width..(row + 1) * width]
    }

    fn text(&self, row: usize) -> &'a str {
        let start = read_u32(self.offsets, row * 4) as usize;
        let end = read_u32(self.offsets, (row + 1) * 4) as usize;
        std::str::from_utf8(&self.data[start..end]).unwrap_or("")
    }
}

/// The rows the host sent to one call: named, typed columns.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    rows: usize,
    columns: Vec<Column<'a>>,
}

impl<'a> Batch<'a> {
    /// Its number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Its columns, in order.
    pub fn columns(&self) -> &[Column<'a>] {
        &self.columns
    }

    /// Column `index`.
    pub fn column(&self, index: usize) -> &Column<'a> {
        &self.columns[index]
    }

    /// The column called `name`, if there is one.
    pub fn column_named(&self, name: &str) -> Option<&Column<'a>> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether any column is NULL in row `row`.
    pub fn any_null(&self, row: usize) -> bool {
        self.columns.iter().any(|c| c.is_null(row))
    }

    /// Reads a batch in the host's layout.
    pub fn decode(bytes: &'a [u8]) -> Result<Batch<'a>, String> {
        let mut reader = Reader { bytes, at: 0 };
        let rows = reader.u32()? as usize;
        let count = reader.u32()? as usize;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let name_len = reader.u32()? as usize;
            let name = std::str::from_utf8(reader.take(name_len)?)
                .map_err(|_| "a column name is not UTF-8".to_string())?;
            let tag = reader.take(1)?[0];
            let nullable = reader.take(1)?[0] != 0;
            let validity = if nullable {
                Some(reader.take(rows)?)
            } else {
                None
            };
            let (offsets, data) = match tag {
                TAG_STR => {
                    let offsets = reader.take((rows + 1) * 4)?;
                    let len = read_u32(offsets, rows * 4) as usize;
                    (offsets, reader.take(len)?)
                }
                _ => (&bytes[0..0], reader.take(rows * width(tag)?)?),
            };
            columns.push(Column {
                name,
                tag,
                rows,
                validity,
                offsets,
                data,
            });
        }
        Ok(Batch { rows, columns })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| "the batch is shorter than its header says".to_string())?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(read_u32(self.take(4)?, 0))
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn width(tag: u8) -> Result<usize, String> {
    match tag {
        TAG_BOOL => Ok(1),
        TAG_I32 | TAG_F32 | TAG_DATE => Ok(4),
        TAG_I64 | TAG_F64 => Ok(8),
        TAG_DECIMAL => Ok(16),
        other => Err(format!("unknown column type tag {}", other)),
    }
}

/// A column being written, for the host.
#[derive(Debug, Clone)]
pub struct ColumnWriter {
    name: String,
    tag: u8,
    rows: usize,
    validity: Vec<u8>,
    offsets: Vec<u32>,
    data: Vec<u8>,
}

impl ColumnWriter {
    /// An empty column of `T` called `name`.
    pub fn new<T: Value>(name: &str) -> Self {
        ColumnWriter {
            name: name.to_string(),
            tag: T::TAG,
            rows: 0,
            validity: Vec::new(),
            offsets: vec![0],
            data: Vec::new(),
        }
    }

    /// A column called `name` holding `values`.
    pub fn from_values<T: Value>(name: &str, values: Vec<Option<T>>) -> Self {
        let mut column = ColumnWriter::new::<T>(name);
        for value in values {
            column.push(value);
        }
        column
    }

    /// Appends a value, or NULL.
    pub fn push<T: Value>(&mut self, value: Option<T>) {
        match value {
            Some(v) => {
                v.put(self);
                self.validity.push(1);
            }
            None => self.push_null(),
        }
    }

    /// Appends a NULL.
    pub fn push_null(&mut self) {
        if self.tag == TAG_STR {
            self.offsets.push(self.data.len() as u32);
        } else {
            let w = width(self.tag).unwrap_or(0);
            self.data.extend(std::iter::repeat(0u8).take(w));
        }
        self.validity.push(0);
        self.rows += 1;
    }

    /// Appends a non-NULL value's bytes (for [`Value::put`]).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if self.tag == TAG_STR {
            self.offsets.push(self.data.len() as u32);
        }
        self.rows += 1;
    }

    /// Its number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.push(self.tag);
        // Validity only where a row is NULL.
        if self.validity.iter().all(|&v| v == 1) {
            out.push(0);
        } else {
            out.push(1);
            out.extend_from_slice(&self.validity);
        }
        if self.tag == TAG_STR {
            for offset in &self.offsets {
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.data);
    }
}

/// Encodes `columns` (all of `rows` rows) as a batch for the host.
pub fn encode_batch(rows: usize, columns: &[ColumnWriter]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    out.extend_from_slice(&(rows as u32).to_le_bytes());
    out.extend_from_slice(&(columns.len() as u32).to_le_bytes());
    for column in columns {
        if column.rows != rows {
            return Err(format!(
                "column `{}` has {} rows, not {}",
                column.name, column.rows, rows
            ));
        }
        column.encode(&mut out);
    }
    Ok(out)
}

/// A type that crosses the boundary: its tag, how it is read from a
/// [`Column`] and written to a [`ColumnWriter`].
pub trait Value: Sized {
    /// The column type tag of the layout.
    const TAG: u8;
    /// The SQL-facing type name of the manifest (`i64`, `str`,
    /// `decimal(15,2)`, …).
    fn type_name() -> String;
    /// Row `row` of `column` (not NULL, of this type).
    fn read(column: &Column, row: usize) -> Self;
    /// Appends this value to `out`.
    fn put(self, out: &mut ColumnWriter);
}

macro_rules! fixed_value {
    ($t:ty, $tag:expr, $name:expr) => {
        impl Value for $t {
            const TAG: u8 = $tag;
            fn type_name() -> String {
                $name.to_string()
            }
            fn read(column: &Column, row: usize) -> Self {
                let mut bytes = [0u8; std::mem::size_of::<$t>()];
                bytes.copy_from_slice(column.fixed(row, std::mem::size_of::<$t>()));
                <$t>::from_le_bytes(bytes)
            }
            fn put(self, out: &mut ColumnWriter) {
                out.push_bytes(&self.to_le_bytes());
            }
        }
    };
}

fixed_value!(i32, TAG_I32, "i32");
fixed_value!(i64, TAG_I64, "i64");
fixed_value!(f32, TAG_F32, "f32");
fixed_value!(f64, TAG_F64, "f64");

impl Value for bool {
    const TAG: u8 = TAG_BOOL;
    fn type_name() -> String {
        "bool".to_string()
    }
    fn read(column: &Column, row: usize) -> Self {
        column.fixed(row, 1)[0] != 0
    }
    fn put(self, out: &mut ColumnWriter) {
        out.push_bytes(&[self as u8]);
    }
}

impl Value for String {
    const TAG: u8 = TAG_STR;
    fn type_name() -> String {
        "str".to_string()
    }
    fn read(column: &Column, row: usize) -> Self {
        column.text(row).to_string()
    }
    fn put(self, out: &mut ColumnWriter) {
        out.push_bytes(self.as_bytes());
    }
}

impl Value for Date {
    const TAG: u8 = TAG_DATE;
    fn type_name() -> String {
        "date".to_string()
    }
    fn read(column: &Column, row: usize) -> Self {
        Date(i32::read(column, row))
    }
    fn put(self, out: &mut ColumnWriter) {
        out.push_bytes(&self.0.to_le_bytes());
    }
}

impl<const P: u8, const S: u8> Value for Decimal<P, S> {
    const TAG: u8 = TAG_DECIMAL;
    fn type_name() -> String {
        format!("decimal({},{})", P, S)
    }
    fn read(column: &Column, row: usize) -> Self {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(column.fixed(row, 16));
        Decimal(i128::from_le_bytes(bytes))
    }
    fn put(self, out: &mut ColumnWriter) {
        out.push_bytes(&self.0.to_le_bytes());
    }
}

/// `value` itself (for [`library!`]'s `partial` functions, which give an
/// `Option` already).
pub fn as_given<T>(value: Option<T>) -> Option<T> {
    value
}

/// One function of a library, as [`library!`] declares it.
#[derive(Clone, Copy)]
pub struct Entry {
    /// Its line of the manifest.
    pub manifest: fn() -> String,
    /// Runs it over a batch, giving the encoded result batch.
    pub call: fn(&Batch) -> Result<Vec<u8>, String>,
}

/// A manifest line: `kind name(arg, …) -> result`.
pub fn signature(kind: &str, name: &str, args: &[String], result: &str) -> String {
    format!("{} {}({}) -> {}", kind, name, args.join(","), result)
}

/// The manifest line of a partition function: `partitions name() ->
/// (column:type, …)`.
pub fn partitions_signature(name: &str, columns: &[(&str, String)]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{}:{}", n, t))
        .collect();
    format!("partitions {}() -> ({})", name, columns.join(","))
}

/// The result of a scalar function: one column.
pub fn scalar_result(out: ColumnWriter, rows: usize) -> Result<Vec<u8>, String> {
    encode_batch(rows, &[out])
}

/// The result of a `flat` function: each row's number of values (-1 for a
/// NULL row) and the values.
pub fn flat_result(lengths: Vec<i32>, values: ColumnWriter) -> Result<Vec<u8>, String> {
    let rows = lengths.len();
    let lengths = ColumnWriter::from_values("lengths", lengths.into_iter().map(Some).collect());
    let mut out = encode_batch(rows, &[lengths])?;
    // Two columns of different lengths: the header counts the first; the
    // second follows with its own row count.
    out[4..8].copy_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(values.rows as u32).to_le_bytes());
    values.encode(&mut out);
    Ok(out)
}

/// The result of a partition function: checks the columns against the
/// declared ones.
pub fn partitions_result(
    columns: Vec<ColumnWriter>,
    declared: &[(&str, u8)],
) -> Result<Vec<u8>, String> {
    if columns.len() != declared.len() {
        return Err(format!(
            "returned {} columns, {} are declared",
            columns.len(),
            declared.len()
        ));
    }
    for (column, (name, tag)) in columns.iter().zip(declared) {
        if column.name != *name || column.tag != *tag {
            return Err(format!(
                "returned column `{}` where `{}` of its declared type is expected",
                column.name, name
            ));
        }
    }
    let rows = columns.first().map_or(0, |c| c.rows);
    encode_batch(rows, &columns)
}

thread_local! {
    static LAST_PANIC: RefCell<String> = RefCell::new(String::new());
}

fn leak(bytes: Vec<u8>) -> i64 {
    let len = bytes.len();
    let ptr = Box::into_raw(bytes.into_boxed_slice()) as *mut u8 as usize;
    ((ptr as i64) << 32) | len as i64
}

/// `ember_alloc`: `len` bytes the host fills (for [`library!`]).
pub fn export_alloc(len: i32) -> i32 {
    let buffer = vec![0u8; len.max(0) as usize].into_boxed_slice();
    Box::into_raw(buffer) as *mut u8 as usize as i32
}

/// `ember_free`: gives back a buffer of [`export_alloc`] or of a result
/// (for [`library!`]).
///
/// # Safety
/// `ptr` and `len` must be those of a buffer this crate handed out, given
/// back once.
pub unsafe fn export_free(ptr: i32, len: i32) {
    let slice = std::ptr::slice_from_raw_parts_mut(ptr as usize as *mut u8, len.max(0) as usize);
    drop(Box::from_raw(slice));
}

/// `ember_manifest`: one line per function (for [`library!`]).
pub fn export_manifest(entries: &[Entry]) -> i64 {
    let lines: Vec<String> = entries.iter().map(|e| (e.manifest)()).collect();
    leak(lines.join("\n").into_bytes())
}

/// `ember_call`: runs function `index` on the batch at `ptr` (for
/// [`library!`]). The result starts with 0 and a batch, or 1 and a
/// message.
///
/// # Safety
/// `ptr` and `len` must be a buffer of [`export_alloc`] that the host
/// filled.
pub unsafe fn export_call(entries: &[Entry], index: i32, ptr: i32, len: i32) -> i64 {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
        }))
    });
    let input = std::slice::from_raw_parts(ptr as usize as *const u8, len.max(0) as usize);
    let result = match entries.get(index as usize) {
        None => Err(format!("no function number {}", index)),
        Some(entry) => Batch::decode(input).and_then(|batch| (entry.call)(&batch)),
    };
    let mut out = Vec::new();
    match result {
        Ok(batch) => {
            out.push(0);
            out.extend_from_slice(&batch);
        }
        Err(message) => {
            out.push(1);
            out.extend_from_slice(message.as_bytes());
        }
    }
    leak(out)
}

/// `ember_last_panic`: the message of the panic that stopped the last
/// call (for [`library!`]).
pub fn export_last_panic() -> i64 {
    leak(LAST_PANIC.with(|p| p.borrow().clone()).into_bytes())
}

/// Declares a module's functions and exports them to Ember (see the
/// crate's documentation for the kinds).
#[macro_export]
macro_rules! library {
    ($($body:tt)*) => {
        $crate::__library_entries! { [] $($body)* }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __library_entries {
    ([$($done:expr,)*]) => {
        fn __ember_entries() -> ::std::vec::Vec<$crate::Entry> {
            ::std::vec![$($done,)*]
        }
        #[no_mangle]
        pub extern "C" fn ember_abi_version() -> i32 {
            $crate::ABI_VERSION
        }
        #[no_mangle]
        pub extern "C" fn ember_alloc(len: i32) -> i32 {
            $crate::export_alloc(len)
        }
        #[no_mangle]
        pub unsafe extern "C" fn ember_free(ptr: i32, len: i32) {
            $crate::export_free(ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn ember_manifest() -> i64 {
            $crate::export_manifest(&__ember_entries())
        }
        #[no_mangle]
        pub unsafe extern "C" fn ember_call(index: i32, ptr: i32, len: i32) -> i64 {
            $crate::export_call(&__ember_entries(), index, ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn ember_last_panic() -> i64 {
            $crate::export_last_panic()
        }
    };
    ([$($done:expr,)*] scalar $name:ident ( $($arg:ty),* ) -> $ret:ty ; $($rest:tt)*) => {
        $crate::__library_entries! {
            @row [$($done,)*] $name ($($arg),*) -> $ret, ::std::option::Option::Some ; $($rest)*
        }
    };
    ([$($done:expr,)*] partial $name:ident ( $($arg:ty),* ) -> $ret:ty ; $($rest:tt)*) => {
        $crate::__library_entries! {
            @row [$($done,)*] $name ($($arg),*) -> $ret, $crate::as_given ; $($rest)*
        }
    };
    (@row [$($done:expr,)*] $name:ident ( $($arg:ty),* ) -> $ret:ty, $wrap:path ; $($rest:tt)*) => {
        $crate::__library_entries! { [$($done,)* $crate::Entry {
            manifest: || $crate::signature(
                "scalar", stringify!($name),
                &[$(<$arg as $crate::Value>::type_name()),*],
                &<$ret as $crate::Value>::type_name()),
            call: |batch: &$crate::Batch| {
                let mut out = $crate::ColumnWriter::new::<$ret>("");
                for row in 0..batch.rows() {
                    if batch.any_null(row) {
                        out.push_null();
                        continue;
                    }
                    #[allow(unused_mut, unused_variables)]
                    let mut next = { let mut k = 0usize; move || { k += 1; batch.column(k - 1) } };
                    let value: Option<$ret> =
                        $wrap($name($(<$arg as $crate::Value>::read(next(), row)),*));
                    out.push(value);
                }
                $crate::scalar_result(out, batch.rows())
            },
        },] $($rest)* }
    };
    ([$($done:expr,)*] flat $name:ident ( $arg:ty ) -> $ret:ty ; $($rest:tt)*) => {
        $crate::__library_entries! { [$($done,)* $crate::Entry {
            manifest: || $crate::signature(
                "flat", stringify!($name),
                &[<$arg as $crate::Value>::type_name()],
                &<$ret as $crate::Value>::type_name()),
            call: |batch: &$crate::Batch| {
                let column = batch.column(0);
                let mut lengths = ::std::vec::Vec::with_capacity(batch.rows());
                let mut values = $crate::ColumnWriter::new::<$ret>("");
                for row in 0..batch.rows() {
                    match column.get::<$arg>(row) {
                        None => lengths.push(-1),
                        Some(input) => {
                            let produced: ::std::vec::Vec<$ret> = $name(input);
                            lengths.push(produced.len() as i32);
                            for value in produced {
                                values.push(Some(value));
                            }
                        }
                    }
                }
                $crate::flat_result(lengths, values)
            },
        },] $($rest)* }
    };
    ([$($done:expr,)*] reduce $name:ident ( $t:ty ) ; $($rest:tt)*) => {
        $crate::__library_entries! { [$($done,)* $crate::Entry {
            manifest: || $crate::signature(
                "reduce", stringify!($name),
                &[<$t as $crate::Value>::type_name()],
                &<$t as $crate::Value>::type_name()),
            call: |batch: &$crate::Batch| {
                let column = batch.column(0);
                let mut acc: Option<$t> = None;
                for row in 0..batch.rows() {
                    if let Some(value) = column.get::<$t>(row) {
                        acc = Some(match acc {
                            Some(a) => $name(a, value),
                            None => value,
                        });
                    }
                }
                let mut out = $crate::ColumnWriter::new::<$t>("");
                out.push(acc);
                $crate::scalar_result(out, 1)
            },
        },] $($rest)* }
    };
    ([$($done:expr,)*] partitions $name:ident -> ( $($col:ident : $t:ty),* ) ; $($rest:tt)*) => {
        $crate::__library_entries! { [$($done,)* $crate::Entry {
            manifest: || $crate::partitions_signature(
                stringify!($name),
                &[$((stringify!($col), <$t as $crate::Value>::type_name())),*]),
            call: |batch: &$crate::Batch| {
                let columns = $name(batch)?;
                $crate::partitions_result(
                    columns,
                    &[$((stringify!($col), <$t as $crate::Value>::TAG)),*])
            },
        },] $($rest)* }
    };
}
