import numpy as np
import torch

from models.preprocess import DINO, SIGLIP, pad_to_square


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
