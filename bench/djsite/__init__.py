"""A small Django project for the benchmarks (bench/apps.py serves it as ``django``).

It is what ``django-admin startproject`` gives (the default middleware stack, the
contrib apps, the default template settings with the cached loader that
DEBUG=False implies) plus one view: a page of an inventory, a URL with an
``<int:page>`` converter, rendered from a template that extends a base layout
and draws a 20-row table.  No database query runs: the page does not touch the
session or the user, as a cached catalogue page would not.
"""
