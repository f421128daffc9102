"""Every ablation optimises exactly the terms its row of the table names."""

import pytest
import torch

from cgbench.config import resolve
from cgbench.methods import get_method
from cgbench.methods.base import ImagePool
from cgbench.methods.cyclegan import ABLATIONS, CycleGAN

EXPECTED_ON = {  # term -> on, per ablation (the paper's definitions)
    "cycle-only": {"cycle_forward", "cycle_backward"},
    "no-cycle": {"G_gan", "F_gan", "D_Y", "D_X"},
    "forward-cycle": {"G_gan", "F_gan", "cycle_forward", "D_Y", "D_X"},
    "backward-cycle": {"G_gan", "F_gan", "cycle_backward", "D_Y", "D_X"},
    "cyclegan": {"G_gan", "F_gan", "cycle_forward", "cycle_backward", "D_Y", "D_X"},
    "identity": {"G_gan", "F_gan", "cycle_forward", "cycle_backward", "idt_G", "idt_F", "D_Y", "D_X"},
}


def _method(ablation: str, **sets) -> CycleGAN:
    torch.manual_seed(0)
    return CycleGAN(resolve("tiny", sets={"ablation": ablation, **sets}), torch.device("cpu"))


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1


def test_paper_rows_are_named():
    assert [a.paper_row for a in ABLATIONS.values()][:5] == [
        "Cycle alone", "GAN alone", "GAN + forward cycle", "GAN + backward cycle", "CycleGAN"]
    assert get_method("cyclegan") is CycleGAN
    assert ABLATIONS["cyclegan"].identity is False  # the Cityscapes numbers were made without identity


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_active_terms(ablation):
    method = _method(ablation)
    losses = method.train_step(*_batch())
    assert set(losses) == set(CycleGAN.terms)
    on = {k for k, v in losses.items() if float(v) != 0.0}
    assert on == EXPECTED_ON[ablation]


@pytest.mark.parametrize("ablation", ["cycle-only", "cyclegan"])
def test_discriminators_train_only_with_a_gan_term(ablation):
    method = _method(ablation)
    before = [p.clone() for p in method.D_Y.parameters()]
    method.train_step(*_batch())
    changed = any(not torch.equal(a, b) for a, b in zip(before, method.D_Y.parameters()))
    assert changed == ABLATIONS[ablation].gan


def test_cycle_terms_follow_the_papers_equations():
    method = _method("cyclegan")
    x, y = _batch()
    with torch.no_grad():
        expected_forward = (method.F(method.G(x)) - x).abs().mean()
        expected_backward = (method.G(method.F(y)) - y).abs().mean()
    losses = method.train_step(x, y)
    assert torch.allclose(losses["cycle_forward"], expected_forward)
    assert torch.allclose(losses["cycle_backward"], expected_backward)


def _record_steps(method, events: list[str]) -> None:
    """Note in ``events`` each optimiser step and each gradient that reaches a discriminator."""
    for name, optimizer in method.optimizers.items():
        step = optimizer.step
        optimizer.step = lambda *a, _step=step, _name=name, **k: (events.append(f"step {_name}"), _step(*a, **k))[1]
    for name in ("D_X", "D_Y"):
        for p in getattr(method, name).parameters():
            p.register_hook(lambda grad, _name=name: events.append(f"grad {_name}") or grad)


@pytest.mark.parametrize("parallel_halves", ["on", "off"])
def test_generator_step_leaves_the_discriminators_untouched_and_then_unfreezes(parallel_halves):
    """G's backward reaches no discriminator weight (they are frozen), the D step then trains both."""
    method = _method("cyclegan", parallel_halves=parallel_halves)
    events: list[str] = []
    _record_steps(method, events)
    method.train_step(*_batch())
    g_step = events.index("step G")
    assert not any(e.startswith("grad D") for e in events[:g_step]), events[:g_step]
    assert {"grad D_X", "grad D_Y"} <= set(events[g_step:events.index("step D")])
    assert all(p.requires_grad for p in method.D_X.parameters())
    assert all(p.requires_grad for p in method.D_Y.parameters())


def test_image_pool_is_the_papers_buffer():
    pool = ImagePool(size=3, seed=0)
    images = [torch.full((1, 1, 2, 2), float(i)) for i in range(20)]
    outs = [pool.query(im) for im in images[:3]]
    assert all(torch.equal(o, i) for o, i in zip(outs, images[:3]))  # fills first, returns the new ones
    returned_old = sum(float(pool.query(im).flatten()[0]) != i for i, im in enumerate(images[3:], 3))
    assert 2 <= returned_old <= 15  # about half of the time an older fake comes back
    state = pool.state_dict()
    clone = ImagePool(size=3, seed=99)
    clone.load_state_dict(state, torch.device("cpu"))
    probe = torch.full((1, 1, 2, 2), -1.0)
    assert torch.equal(pool.query(probe), clone.query(probe))
