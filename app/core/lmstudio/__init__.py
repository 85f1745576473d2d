"""Everything the product does inside LM Studio's folder (Qt-free): find, read, judge, install, repair.

The contract is ``docs/lmstudio-contract.md``. Public entry points:

* :func:`.home.resolve_home` -> :class:`.home.LmsHome` (never writes the pointer file)
* :func:`.backends.read_backend`, :func:`.backends.list_backends`, :func:`.backends.find_backend`
* :func:`.displaydata.llama_cpp_build`; :mod:`.jsondoc` (faithful JSON rewrites)
* :func:`.naming.our_backend_name`, :func:`.clone.clone_template`
* :mod:`.install`: ``validate_backend_folder``, ``plan_install``/``execute_install``, ``plan_uninstall``/
  ``execute_uninstall``/``restore_uninstall``, ``plan_select``/``execute_select``, ``recover`` (call it at
  every command start); :mod:`.provenance` (``unlocked-install.json``); :mod:`.journal` (where staging,
  backups and the journal live: ``<home>/.lms-unlocked/``)
* :func:`.judge.judge_backend` (LM Studio's status vocabulary), :mod:`.prefs` (selection, settings),
  :mod:`.processes` (is LM Studio running), :mod:`.engine_index` (LM Studio's own last verdicts)
* :func:`.doctor.diagnose` / :func:`.doctor.repair`
"""
