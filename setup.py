from setuptools import find_packages, setup

setup(
    name='deconas_basicsr',
    version='0.1.0',
    description='DeCoNAS: neural architecture search for single-image super-resolution, as a BasicSR plugin',
    # the method and deconas_plugin/reporting/; benchmarks/, tools/ and tests/ stay in the checkout
    packages=find_packages(include=['deconas_plugin', 'deconas_plugin.*']),
    license='Apache-2.0',
    python_requires='>=3.9',
    install_requires=['basicsr==1.4.2', 'torch', 'torchvision', 'lmdb', 'pyyaml', 'tqdm'],
    extras_require={'report': ['matplotlib', 'mmengine'], 'onnx': ['onnx', 'onnxruntime']},
)
