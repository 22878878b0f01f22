"""Jinja templates of the dataset cards (shipped inside the wheel as `hf_selectit.dataset_cards`)."""
