"""Pipeline components: plain functions ``run(spec, inputs) -> outputs``.

Each module holds one component (or one helper concept), its frozen spec and nothing of
Beam's or MLflow's wiring beyond what the component itself needs. Pipelines in
``pipelines/`` call them; a notebook can too.
"""
