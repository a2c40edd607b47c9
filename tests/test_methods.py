"""Methods: names derived from compositions, the registry, any k, storage."""

import json

import pytest

from dalv import methods
from dalv.augment import FGSMAdv, FVAdv, NoAugment, OwnAdv
from dalv.methods import REGISTRY, Method, get, method_from_dict, method_to_dict
from dalv.strategies import BADGE, DeepFoolDistance, FGSMDistance, Mixture, Random
from dalv.verify import Budget, MarabouVerifier, Property, Schedule


def test_every_registry_key_is_its_methods_derived_name():
    for key, m in REGISTRY.items():
        assert m.name == key


@pytest.mark.parametrize(
    "method,name",
    [
        (Method(FGSMDistance()), "FVAAL-No-Adv"),  # not "FVAAL": nothing is added
        (Method(DeepFoolDistance()), "DFAL-No-Adv"),
        (Method(DeepFoolDistance(), OwnAdv()), "DFAL"),
        (Method(FGSMDistance(), FVAdv(k=10)), "FVAAL"),
        (Method(FGSMDistance(), FVAdv(k=5)), "FVAAL+FV-Adv(5)"),
        (Method(FGSMDistance(), OwnAdv()), "FVAAL+Own-Adv"),
        (Method(BADGE()), "BADGE"),
        (Method(Random(), FGSMAdv(k=3)), "Random+FGSM-Adv(3)"),
        (Method(Mixture(), FVAdv()), "FVAAL_rand+FV-Adv(10)"),
    ],
)
def test_names_come_from_the_composition(method, name):
    assert method.name == name


@pytest.mark.parametrize(
    "name,k,aug",
    [
        ("Random+FV-Adv(3)", 3, FVAdv),
        ("FVAAL+FV-Adv(5)", 5, FVAdv),
        ("DFAL+FGSM-Adv(4)", 4, FGSMAdv),
        ("BADGE+FGSM-Adv(10)", 10, FGSMAdv),
    ],
)
def test_any_k_in_a_name(name, k, aug):
    m = get(name)
    assert m.name == name and isinstance(m.augmenter, aug) and m.augmenter.k == k


@pytest.mark.parametrize(
    "name,hint",
    [
        ("badge", "Did you mean 'BADGE'"),
        ("FVAAL(3)", "Choose one of"),
        ("Random+FV-Adv(0)", "Choose one of"),
        ("Oracle", "Choose one of: Random"),
    ],
)
def test_unknown_names_are_refused_with_a_hint(name, hint):
    with pytest.raises(ValueError, match=hint):
        get(name)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_method_round_trips_through_json(name):
    m = REGISTRY[name]
    stored = json.loads(json.dumps(method_to_dict(m)))
    assert stored["name"] == name and method_from_dict(stored) == m


def test_nested_settings_round_trip():
    m = Method(
        Mixture(base=FGSMDistance(tol=1e-3), fraction=0.25),
        FVAdv(
            MarabouVerifier(workers=2),
            k=3,
            schedule=Schedule(step=0.1, max_eps=0.5),
            budget=Budget(work=7, seconds=None),
            prop=Property(target="any", separation="any_coord"),
        ),
    )
    assert method_from_dict(json.loads(json.dumps(method_to_dict(m)))) == m


def test_unregistered_types_are_refused():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Mine(Random):
        pass

    with pytest.raises(TypeError, match="register_type"):
        method_to_dict(Method(Mine()))
    methods.register_type(Mine)
    assert method_from_dict(method_to_dict(Method(Mine()))) == Method(Mine())


def test_with_verifier_reaches_only_fv_adv():
    v = MarabouVerifier(workers=1)
    assert get("FVAAL").with_verifier(v).augmenter.verifier == v
    assert get("Random").with_verifier(v) == get("Random")
    assert get("DFAL").with_verifier(v).augmenter == OwnAdv()
    assert isinstance(get("FVAAL-No-Adv").augmenter, NoAugment)
