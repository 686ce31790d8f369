import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';

// The layers, lowest first. A layer may import only from layers before it.
const layers = ['io', 'model', 'gpu', 'kernels', 'analysis', 'jobs', 'state', 'ui'];
const fence = (layer, above) => ({
  files: [`src/${layer}/**/*.{ts,tsx}`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: above.map((upper) => ({
        group: [`**/${upper}/*`, `**/${upper}`],
        message: `src/${layer} sits below src/${upper}: move the shared code down into src/${layer} or a lower layer instead of importing upward.`,
      })),
    }],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test/fixtures/**', 'public/**', 'bench/results/**', 'bench/.venv/**', 'bench/models/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.browser, ...globals.node } },
    plugins: { 'react-hooks': reactHooks },
    rules: {
      ...reactHooks.configs.recommended.rules,
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layers.map((layer, i) => fence(layer, [...layers.slice(i + 1), 'cli'])),
  fence('cli', ['state', 'ui']),
);
