"""Qwen2.5-VL (specs/qwen2_vl.md §1.8): config reader and presets (`config`), the window mask
(`windows`), the vision tower (`vision`) and the model (`model`)."""
