import torch

from models.config import LongVUConfig
from models.vision.connector import Connector


def sva_attention_mask(size: tuple[int, int]) -> torch.Tensor:
    connector = Connector(LongVUConfig(model_type="cambrian_qwen", hidden_size=8, vision_hidden_size=16), (8, 8))
    return connector.attention_mask(size)


def test_sva_mask_with_the_quirk_masks_columns_of_a_wide_video() -> None:
    # 1280x720 handed over as (height, width) and read as (width, height).
    mask = sva_attention_mask((720, 1280))
    grid = mask.view(12, 12, 2, 2).permute(0, 2, 1, 3).reshape(24, 24)
    # Columns 0-4 and 19-23 are padding; queries over columns 0-3 and 20-23 see nothing
    # there and so see their whole patch, those over 4-5 and 18-19 see their inner half.
    assert not grid[:, 4].any() and not grid[:, 19].any()
    assert grid[:, :4].all() and grid[:, 5:19].all() and grid[:, 20:].all()


def test_sva_mask_query_with_nothing_to_see_sees_all() -> None:
    mask = sva_attention_mask((1280, 100))  # a thin strip: most rows masked
    assert mask.any(dim=1).all()
    assert mask[0].all()


def test_square_frame_masks_nothing() -> None:
    assert sva_attention_mask((64, 64)).all()


def test_aggregate_shapes(model) -> None:  # type: ignore[no-untyped-def]
    siglip = torch.randn(3, 576, 32)
    dino = torch.randn(3, 576, 48)
    out = model.connector.aggregate(siglip, dino, sva_attention_mask((64, 64)))
    assert out.shape == (3, 144, 64) and torch.isfinite(out).all()
