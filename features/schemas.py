"""Input data contracts: pandera schemas and the functions that apply them.

Each input table (units, demographics, sales, alignment, reps) has a schema
built from a :class:`~features.config.ColumnsConfig`, so column names are
configurable. Validation is lazy; the first broken rule is turned into one
:class:`~features.errors.InputError` that names the file, the column, up to
five offending rows and the rule.

Validation runs in two stages. The *parse* stage casts identifiers to text,
parses dates and coerces numeric columns, so a rule check never sees a value
of the wrong type. The *rule* stage checks nulls, known ids, ranges and
uniqueness on the parsed frame.

Rows are named after where they came from. :func:`territory.features.io.read_table`
records the number of the first data row in ``DataFrame.attrs`` (2 for CSV,
where line 1 is the header; 1 for other formats), so messages say
``line 8`` (CSV) or ``row 7``; a frame built in memory is described by its
index labels (``index 6``).

The code lives in private modules by theme; import from here:

* ``_contract``: column names, row descriptions, errors, the parse stage and
  the pandera glue;
* ``_pandera_schemas``: the schema of each table;
* ``_validate_units``: the units table and its geometry;
* ``_validate_tables``: the tables keyed by unit (demographics, sales,
  alignment, reps).
"""

from territory.features._contract import (
    CAPACITY_COL,
    FIRST_ROW_ATTR,
    FIRST_ROW_KIND_ATTR,
    GEOMETRY_COL,
    HOME_UNIT_COL,
    LAT_COL,
    LON_COL,
    PERIOD_ALIAS,
    SALES_DRIVER_MEAN_COLS,
    SALES_DRIVER_SUM_COLS,
    UNIT_TEXT_COLS,
)
from territory.features._pandera_schemas import (
    alignment_schema,
    demographics_schema,
    reps_schema,
    sales_schema,
    units_schema,
)
from territory.features._validate_tables import (
    validate_alignment,
    validate_demographics,
    validate_reps,
    validate_sales,
)
from territory.features._validate_units import GeometryRepairWarning, validate_units

__all__ = [
    "CAPACITY_COL",
    "FIRST_ROW_ATTR",
    "FIRST_ROW_KIND_ATTR",
    "GEOMETRY_COL",
    "HOME_UNIT_COL",
    "LAT_COL",
    "LON_COL",
    "PERIOD_ALIAS",
    "SALES_DRIVER_MEAN_COLS",
    "SALES_DRIVER_SUM_COLS",
    "UNIT_TEXT_COLS",
    "GeometryRepairWarning",
    "alignment_schema",
    "demographics_schema",
    "reps_schema",
    "sales_schema",
    "units_schema",
    "validate_alignment",
    "validate_demographics",
    "validate_reps",
    "validate_sales",
    "validate_units",
]
