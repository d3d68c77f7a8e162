from django.shortcuts import render
from inventory import PAGES, page_rows


def items(request, page):
    rows = page_rows(page)
    return render(
        request,
        "djsite/items.html",
        {
            "page": page,
            "pages": range(1, PAGES + 1),
            "rows": rows,
            "total": sum(row["total"] for row in rows),
        },
    )
