import numpy as np
import pytest
import torch

from models.vision.preprocess import DINO, SIGLIP, pad_to_square, preprocess_on_device
from models.vision.staging import StagingPool


def test_pad_to_square_centres_on_mean_colour() -> None:
    frame = torch.full((1, 3, 2, 6), 9, dtype=torch.uint8)
    square = pad_to_square(frame, (1, 2, 3))
    assert square.shape == (1, 3, 6, 6)
    assert torch.equal(square[0, :, 2:4, :], frame[0])
    assert square[0, :, 0, 0].tolist() == [1, 2, 3] and square[0, :, 5, 5].tolist() == [1, 2, 3]


def test_tower_inputs_have_their_sizes_and_normalisation() -> None:
    wide = np.zeros((30, 90, 3), dtype=np.uint8)
    siglip, dino = SIGLIP([wide]), DINO([wide])
    assert siglip.shape == (1, 3, 384, 384) and dino.shape == (1, 3, 378, 378)
    # Padding rows carry the processor's mean colour, which normalises to (about) zero.
    pad_value = (127 / 255 - 0.5) / 0.5
    assert torch.allclose(siglip[0, :, 0, :], torch.full((3, 384), pad_value), atol=1e-6)
    mean = torch.tensor([0.485, 0.456, 0.406])
    expected = (torch.tensor([123, 116, 103]) / 255 - mean) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(dino[0, :, 0, 0], expected, atol=1e-5)
    # The picture (black) sits in the middle band.
    assert torch.allclose(siglip[0, :, 192, 192], torch.full((3,), -1.0))


@pytest.mark.parametrize(("height", "width"), [(48, 64), (36, 64), (720, 1280), (101, 37), (384, 384), (17, 5),
                                                (379, 377), (1080, 1920)])
def test_the_device_resize_gives_pils_bits(height: int, width: int) -> None:
    """The torch implementation (what a GPU runs) equals PIL (what the reference runs), bit
    for bit, upscaling and downscaling, odd sizes included."""
    rng = np.random.default_rng(height * 10_000 + width)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    for preprocess in (SIGLIP, DINO):
        pil = np.stack([preprocess.resize(frame) for frame in frames])
        ours = preprocess.resize_on(batch).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(pil, ours), (preprocess.size, np.abs(pil.astype(int) - ours.astype(int)).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the device path needs a GPU")
def test_the_gpu_pixels_are_the_cpu_pixels() -> None:
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(3)]
    for preprocess in (SIGLIP, DINO):
        assert torch.equal(preprocess(frames, torch.device("cuda")).cpu(), preprocess(frames))


def test_the_device_path_runs_on_the_cpu_too() -> None:
    """LONGVU_PREPROCESS=device on a CPU: staged and preprocessed with torch, PIL's bits."""
    rng = np.random.default_rng(8)
    frames = [rng.integers(0, 256, (45, 80, 3), dtype=np.uint8) for _ in range(3)]
    for preprocess in (SIGLIP, DINO):
        on_cpu = preprocess.on_device(StagingPool(pin=False).stage(frames).tensor, torch.device("cpu"))
        assert torch.equal(on_cpu, preprocess(frames))


def test_the_setting_picks_where_preprocessing_runs() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [preprocess_on_device(c, cpu) for c in ("auto", "host", "device")] == [False, False, True]
    assert [preprocess_on_device(c, gpu) for c in ("auto", "host", "device")] == [True, False, True]
