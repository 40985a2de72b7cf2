"""HTTP faces of mmsearch: thin translations between the public APIs and the search core."""
