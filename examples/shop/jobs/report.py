"""nightly-report: a cron job (``0 2 * * *``) that summarises the shop's orders to stdout.

It reads the orders service's SQLite database read-only, at ``$ORDERS_DB`` (default
``../orders/orders.db``, relative to the job's working directory), prints the number of orders,
the revenue and the best-selling products, and exits 0. Before the first order there is no
database yet, and it says so and still exits 0: an empty shop is not a failed job.
"""

import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

TOP_PRODUCTS = 3


def report(db_path: Path) -> str:
    """The summary text for the orders database at ``db_path``."""
    if not db_path.exists():
        return f"no orders yet ({db_path} does not exist)"
    with closing(sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        try:
            count, revenue = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(total_cents), 0) FROM orders"
            ).fetchone()
            top = db.execute(
                "SELECT name, SUM(qty) AS sold FROM order_items"
                " GROUP BY product_id ORDER BY sold DESC, name LIMIT ?",
                (TOP_PRODUCTS,),
            ).fetchall()
        except sqlite3.OperationalError:  # the database exists but has no tables yet
            count, revenue, top = 0, 0, []
    if count == 0:
        return f"no orders yet ({db_path})"
    lines = [
        f"orders report for {db_path}",
        f"orders:  {count}",
        f"revenue: {revenue / 100:.2f} EUR",
        "best sellers: " + ", ".join(f"{name} x{sold}" for name, sold in top),
    ]
    return "\n".join(lines)


def main() -> int:
    print(report(Path(os.environ.get("ORDERS_DB", "../orders/orders.db"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
