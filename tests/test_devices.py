"""Which device trains, and the one-line hint when a GPU is present but the backend cannot use it."""

from __future__ import annotations

from cifarx.training import devices


def test_a_gpu_the_backend_cannot_see_gets_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(devices, "machine_gpus", lambda: ["0000:17:00.0"])
    hint = devices.unused_gpu_hint(["CPU:/physical_device:CPU:0"])
    assert hint is not None and "\n" not in hint
    assert "1 NVIDIA GPU" in hint and "tensorflow backend sees none" in hint
    assert "pip install 'cifarx[cuda]'" in hint and "KERAS_BACKEND=jax" in hint


def test_no_hint_when_the_backend_uses_the_gpu_or_there_is_none(monkeypatch):
    monkeypatch.setattr(devices, "machine_gpus", lambda: ["0000:17:00.0"])
    assert devices.unused_gpu_hint(["CPU:/physical_device:CPU:0", "GPU:/physical_device:GPU:0"]) is None
    monkeypatch.setattr(devices, "machine_gpus", lambda: [])
    assert devices.unused_gpu_hint(["CPU:/physical_device:CPU:0"]) is None


def test_training_device_is_the_first_gpu_else_the_cpu():
    assert devices.training_device(["CPU:/physical_device:CPU:0"]) == "CPU"
    assert devices.training_device(["CPU:cpu", "gpu:cuda:0", "gpu:cuda:1"]) == "gpu:cuda:0"
    assert devices.training_device(["cpu:TFRT_CPU_0"]) == "CPU"


def test_this_machines_devices_are_listed():
    listed = devices.compute_devices()
    assert listed and any(d.upper().startswith("CPU") for d in listed)
