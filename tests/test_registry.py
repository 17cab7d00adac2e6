"""The one registry type: loud on collisions, clear on unknown names, for every kind of name."""

import pytest
import torch.nn as nn

from vs_plugin.compare.registry import METHODS, register_method, unregister_method
from vs_plugin.data.registry import DATASETS, register_dataset
from vs_plugin.errors import ConfigError, UnknownNameError
from vs_plugin.layers.registry import LAYER_KINDS, layer_kind, register_layer_kind
from vs_plugin.models.registry import MODEL_FAMILIES, register_model_family
from vs_plugin.registry import Registry


def test_a_registry_is_loud_on_collisions_and_lists_known_names():
    registry: Registry[int] = Registry("widget")
    registry.register("a", 1, usage="a:<n>", source="here")
    with pytest.raises(ConfigError, match="widget 'a' is already registered \\(by here\\)"):
        registry.register("a", 2)
    assert registry.get("a") == 1 and registry.names() == ("a",) and "a" in registry
    assert registry.usages() == {"a": "a:<n>"}
    with pytest.raises(UnknownNameError, match="unknown widget 'b'; known widgets: a"):
        registry.get("b")
    registry.unregister("a")
    assert registry.names() == ()


def test_entry_points_of_a_group_are_names_too():
    assert {"level", "variational_student", "gradual_magnitude"} <= set(METHODS.names())
    with pytest.raises(ConfigError, match="already provided by"):
        register_method("level", lambda: None)


@pytest.mark.parametrize("registry, register, name", [
    (MODEL_FAMILIES, lambda: register_model_family("mlp", lambda a, s: nn.Identity(), "mlp"), "mlp"),
    (DATASETS, lambda: register_dataset("digits", lambda *a: None, "digits"), "digits"),
    (LAYER_KINDS, lambda: register_layer_kind("Linear", layer_kind("Linear")), "Linear"),
])
def test_every_registry_is_the_one_type(registry, register, name):
    assert isinstance(registry, Registry) and name in registry
    with pytest.raises(ConfigError, match="already registered"):
        register()


def test_method_registration_round_trip():
    register_method("my-test-method", lambda: None, source="a test")
    try:
        assert "my-test-method" in METHODS.names() and METHODS.source("my-test-method") == "a test"
    finally:
        unregister_method("my-test-method")
