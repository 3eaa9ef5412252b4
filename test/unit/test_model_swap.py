"""ModelSwap (nodes/policy_io.py): a load that fails in any way keeps the old model and ends the load."""
from types import SimpleNamespace

from residual_control.nodes import policy_io


class _Node:
    """The parts of an rclpy node ModelSwap uses: parameters, a logger."""

    def __init__(self, params):
        self.params = dict(params)
        self.errors = []

    def get_logger(self):
        return SimpleNamespace(error=self.errors.append, warning=self.errors.append)

    def get_parameter(self, name):
        return SimpleNamespace(value=self.params[name])

    def set_parameters(self, params):
        self.params.update({p.name: p.value for p in params})


def test_a_load_that_raises_anything_is_refused_and_the_old_parameters_come_back(monkeypatch):
    def broken(path, sha, expect):
        raise TypeError("float() argument must be a string or a real number, not 'NoneType'")

    monkeypatch.setattr(policy_io, "LoadedPolicy", broken)
    node = _Node({"model_path": "new.onnx", "model_sha256": ""})  # the request, as the node holds it
    refused, loaded = [], []
    swap = policy_io.ModelSwap(node, None, "old.onnx", "", lambda: "default.onnx",
                               lambda: SimpleNamespace(path="old.onnx"), loaded.append, refused.append)
    swap.loading = True
    swap._load("new.onnx", "")  # the worker thread's body, run here
    assert not swap.loading and not swap.reverting and not loaded
    assert refused and "model update refused: TypeError: float() argument" in refused[0]
    assert node.params == {"model_path": "old.onnx", "model_sha256": ""}
    assert swap.request({"model_path": "other.onnx"}) != "a model is being loaded; try again when it has " \
        "switched or failed"
