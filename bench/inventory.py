"""The data behind the template and JSON scenarios (same for Django and Flask).

A page of an inventory: 20 rows of a few fields, computed from the page number
(deterministic, so that bench/check.py can compare exact bytes), with names that
need HTML escaping now and then, like real data.
"""

PAGES = 10
ROWS = 20
_NAMES = ("bolt", "nut", "washer", "gear", "spring", "hinge", "Tom & Jerry's <set>")


def page_rows(page):
    rows = []
    for i in range(ROWS):
        n = page * ROWS + i
        price = ((n * 7919) % 10000) / 100
        quantity = (n * 31) % 97 + 1
        rows.append(
            {
                "id": n,
                "name": f"{_NAMES[n % len(_NAMES)]} {n}",
                "price": price,
                "quantity": quantity,
                "total": round(price * quantity, 2),
                "in_stock": n % 3 != 0,
            }
        )
    return rows
