"""Rebuild app_users.parquet from app_users.csv: `python manifests/data/make_parquet.py`.

The Parquet file is committed so the demo needs no build step; rerun this after editing
the CSV and commit both.
"""

from pathlib import Path

import duckdb  # noqa: TID251  # a build script for example data, not part of segops

HERE = Path(__file__).resolve().parent


def main() -> None:
    source, target = HERE / "app_users.csv", HERE / "app_users.parquet"
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT * FROM read_csv(?, header = true, all_varchar = true) "
            "ORDER BY user_agent_id) TO '" + str(target).replace("'", "''") + "' "
            "(FORMAT parquet, COMPRESSION zstd)",
            [str(source)],
        )
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
