"""Versioned harnesses and skills: tables (models), queries (store), sandboxed rendering
(render, sandbox), skill folders (skills) and the built-ins seeded on first start (seed)."""
