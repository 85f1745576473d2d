"""Everything the product does inside LM Studio's folder (Qt-free): find, read, judge, install, repair.

The contract is ``../shared/reference/lmstudio-backends.md``. Public entry points:

* :func:`app.core.lmstudio.home.resolve_home`
* :func:`app.core.lmstudio.backends.list_backends` / :func:`~app.core.lmstudio.backends.find_backend`
* :func:`app.core.lmstudio.displaydata.llama_cpp_build`
* :func:`app.core.lmstudio.naming.our_backend_name`, :func:`app.core.lmstudio.clone.clone_template`
* :mod:`app.core.lmstudio.install` (plan/execute install, uninstall, select; ``recover``)
"""
