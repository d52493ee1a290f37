"""Type hints for Ember's native module (see the package's docstring)."""

from os import PathLike
from typing import Any, Sequence

import pyarrow

__version__: str

class EmberError(Exception):
    """An error from Ember: its message is one line that names the culprit."""

class Expr:
    """A column expression: build with ``col``, ``lit`` and the aggregate
    functions; combine with operators (``&``, ``|``, ``~`` for and, or, not)."""
    def __add__(self, other: Any) -> Expr: ...
    def __radd__(self, other: Any) -> Expr: ...
    def __sub__(self, other: Any) -> Expr: ...
    def __rsub__(self, other: Any) -> Expr: ...
    def __mul__(self, other: Any) -> Expr: ...
    def __rmul__(self, other: Any) -> Expr: ...
    def __truediv__(self, other: Any) -> Expr: ...
    def __rtruediv__(self, other: Any) -> Expr: ...
    def __mod__(self, other: Any) -> Expr: ...
    def __neg__(self) -> Expr: ...
    def __and__(self, other: Any) -> Expr: ...
    def __or__(self, other: Any) -> Expr: ...
    def __invert__(self) -> Expr: ...
    def __lt__(self, other: Any) -> Expr: ...
    def __le__(self, other: Any) -> Expr: ...
    def __eq__(self, other: Any) -> Expr: ...  # type: ignore[override]
    def __ne__(self, other: Any) -> Expr: ...  # type: ignore[override]
    def __gt__(self, other: Any) -> Expr: ...
    def __ge__(self, other: Any) -> Expr: ...
    def alias(self, name: str) -> Expr:
        """This expression under another name."""
    def is_null(self) -> Expr:
        """Whether the value is null."""
    def is_not_null(self) -> Expr:
        """Whether the value is not null."""
    def isin(self, values: Sequence[Any]) -> Expr:
        """Whether the value is one of ``values``."""
    def between(self, low: Any, high: Any) -> Expr:
        """Whether the value lies between ``low`` and ``high``, both included."""
    def cast(self, to: str) -> Expr:
        """The value as the SQL type ``to`` (``"bigint"``, ``"decimal(12,2)"``, ...)."""
    def asc(self) -> SortExpr:
        """Ascending sort key (nulls last)."""
    def desc(self) -> SortExpr:
        """Descending sort key (nulls first)."""

class SortExpr:
    """A sort key: an expression with its direction."""

ExprLike = Expr | str

class GroupedDataFrame:
    """A DataFrame grouped by keys."""
    def agg(self, *aggregates: ExprLike) -> DataFrame:
        """One row per group: the keys and the aggregates given."""

class DataFrame:
    """A lazy, distributed table. Transformations return new DataFrames and
    run nothing; actions run the plan, embedded or on the cluster."""
    columns: list[str]
    schema_string: str
    storage_level: str | None
    def select(self, *exprs: ExprLike) -> DataFrame:
        """The columns or expressions given (``Expr`` or SQL strings)."""
    def filter(self, predicate: ExprLike) -> DataFrame:
        """The rows where ``predicate`` holds."""
    def with_column(self, name: str, expr: ExprLike) -> DataFrame:
        """This DataFrame with the column ``name`` set to ``expr``."""
    def drop(self, *columns: str) -> DataFrame:
        """This DataFrame without the columns given."""
    def rename(self, old: str, new: str) -> DataFrame:
        """This DataFrame with the column ``old`` renamed to ``new``."""
    def join(
        self,
        other: DataFrame,
        on: Sequence[str] | None = None,
        *,
        left_on: Sequence[str] | None = None,
        right_on: Sequence[str] | None = None,
        how: str = "inner",
    ) -> DataFrame:
        """Joins with ``other`` (inner, left, right, full, semi or anti)."""
    def group_by(self, *keys: ExprLike) -> GroupedDataFrame:
        """Groups by the keys given; follow with ``agg``."""
    def agg(self, *aggregates: ExprLike) -> DataFrame:
        """Aggregates all rows into one."""
    def sort(self, *keys: SortExpr | ExprLike) -> DataFrame:
        """Sorted by the keys given (column names ascending, ``"-name"`` descending)."""
    def limit(self, n: int) -> DataFrame:
        """The first ``n`` rows."""
    def distinct(self) -> DataFrame:
        """The distinct rows."""
    def union(self, other: DataFrame) -> DataFrame:
        """The rows of both (UNION ALL; columns match by position)."""
    def repartition(self, partitions: int, by: Sequence[str] | None = None) -> DataFrame:
        """Redistributed round robin, or by the hash of the columns ``by``."""
    def cache(self) -> DataFrame:
        """Kept where computed (memory, spilling to disk) for later actions."""
    def persist(self, level: str = "memory_and_disk") -> DataFrame:
        """Like ``cache``, at ``memory``, ``disk`` or ``memory_and_disk``."""
    def unpersist(self) -> DataFrame:
        """Frees what ``cache``/``persist`` kept; the DataFrame of its lineage."""
    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """Runs the plan; its rows through the Arrow PyCapsule stream interface."""
    def to_arrow(self) -> pyarrow.Table:
        """Runs the plan; its rows as a ``pyarrow.Table``."""
    def collect(self) -> list[pyarrow.RecordBatch]:
        """Runs the plan; its rows as Arrow record batches."""
    def to_pandas(self) -> Any:
        """Runs the plan; its rows as a ``pandas.DataFrame``."""
    def to_polars(self) -> Any:
        """Runs the plan; its rows as a ``polars.DataFrame``."""
    def count(self) -> int:
        """The number of rows."""
    def show(self, n: int = 20) -> None:
        """Prints the first ``n`` rows as a table."""
    def show_string(self, n: int = 20) -> str:
        """The first ``n`` rows as a text table."""
    def explain(self) -> str:
        """The plan as text (and, on a cluster, its stages)."""
    def write_parquet(self, path: str, partition_by: Sequence[str] | None = None) -> None:
        """Writes Parquet files under ``path``, atomically, partitioned by columns."""
    def write_csv(self, path: str, partition_by: Sequence[str] | None = None) -> None:
        """Writes CSV files (with a header row) under ``path``, atomically."""
    def write_json(self, path: str, partition_by: Sequence[str] | None = None) -> None:
        """Writes newline-delimited JSON files under ``path``, atomically."""

class UserFunction:
    """A registered Python function: calling it with expressions applies it."""
    name: str
    def __call__(self, *args: Any) -> Expr: ...

class Context:
    """An Ember session: embedded in this process, or a cluster's client."""
    master: str
    def sql(self, query: str) -> DataFrame:
        """One SQL statement: a query is lazy; DDL and SET take effect now."""
    def read_parquet(self, path: str) -> DataFrame:
        """The Parquet files at ``path`` (file, directory or glob; local or s3://)."""
    def read_csv(self, path: str) -> DataFrame:
        """The CSV files (with a header row) at ``path``."""
    def read_json(self, path: str) -> DataFrame:
        """The newline-delimited JSON files at ``path``."""
    def table(self, name: str) -> DataFrame:
        """The table or view ``name`` of the catalog."""
    def from_arrow(self, data: Any, partitions: int = 1) -> DataFrame:
        """Driver data with ``__arrow_c_stream__`` (pyarrow, Polars) as a DataFrame."""
    def from_pandas(self, df: Any, partitions: int = 1) -> DataFrame:
        """A pandas DataFrame (index dropped) as a DataFrame."""
    def from_polars(self, df: Any, partitions: int = 1) -> DataFrame:
        """A Polars DataFrame as a DataFrame."""
    def register_udf(
        self, name: str, function: Any, input_types: Sequence[Any], return_type: Any
    ) -> UserFunction:
        """Registers a Python function over pyarrow arrays as the SQL function
        ``name`` (embedded only; on a cluster it raises, naming what to use)."""
    def register_view(self, name: str, df: DataFrame) -> None:
        """Registers ``df`` as the view ``name``, for SQL."""

def connect(
    master: str | None = None,
    *,
    token_file: str | PathLike[str] | None = None,
    tls_ca: str | PathLike[str] | None = None,
    tls_cert: str | PathLike[str] | None = None,
    tls_key: str | PathLike[str] | None = None,
    tls_server_name: str | None = None,
) -> Context:
    """A session: None (EMBER_MASTER, else embedded), "local", or a scheduler
    ("df://host:port")."""

def col(name: str) -> Expr:
    """The column ``name``."""

def lit(value: int | float | str | bool | None) -> Expr:
    """A literal value."""

def sum(expr: Expr) -> Expr:
    """The sum of ``expr``."""

def avg(expr: Expr) -> Expr:
    """The mean of ``expr``."""

def min(expr: Expr) -> Expr:
    """The smallest value of ``expr``."""

def max(expr: Expr) -> Expr:
    """The largest value of ``expr``."""

def count(expr: Expr | None = None) -> Expr:
    """The number of non-null values of ``expr`` (of rows without one)."""

def count_distinct(expr: Expr) -> Expr:
    """The number of distinct non-null values of ``expr``."""

def func(name: str, *args: Any) -> Expr:
    """The function ``name`` of Ember's SQL (``upper``, ``round``,
    ``date_trunc``, ``stddev``, ...) applied to ``args``."""
