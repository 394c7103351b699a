"""Held-out scores of trained models (:mod:`.heldout`, with the fast path beside it in
:mod:`.fast`) and the paired comparison of the estimators over seeds (:mod:`.statistics`)."""
