"""A local web app to label tiles, review what the stages made of them, and see the footprints on a map.

`python -m webapp --help`; the pages and routes are in webapp/app.py, the README's "Label and review in the
browser" shows them.
"""
