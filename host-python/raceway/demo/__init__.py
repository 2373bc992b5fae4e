"""The bundled demo (``python -m raceway demo``): `raceway.demo.bank`, the README's banking
service with its lost update, and the same service fixed with one lock."""
