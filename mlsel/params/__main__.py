"""``python -m mlsel.params`` prints params.yaml as the model defines it."""

from mlsel.params.render import render_params_yaml

print(render_params_yaml(), end="")
