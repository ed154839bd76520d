// ESLint flat config: typescript-eslint's type-aware recommended rules; formatting is Prettier's.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

/** Folders below the applications (src/lib is checked on its own, more strictly, below). */
const LIBRARY_FOLDERS = [
  'qos',
  'peers',
  'tickets',
  'sources',
  'work',
  'stratum',
  'protocol',
  'tor',
  'storage',
];
/** The applications: the relay, the client, their command line and the demo. */
const APPLICATION_FOLDERS = ['relay', 'client', 'cli', 'demo'];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'wasm/*.wasm', '.tmp/', 'test/artifacts/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.js', 'bin/*.js', 'scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    // The dashboard's browser modules, served as they are: browser globals, no TS program.
    files: ['src/relay/dashboard/public/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      sourceType: 'module',
      globals: {
        AbortController: 'readonly',
        HTMLElement: 'readonly',
        ResizeObserver: 'readonly',
        clearTimeout: 'readonly',
        document: 'readonly',
        fetch: 'readonly',
        setTimeout: 'readonly',
      },
    },
  },
  {
    // Layering (README "Layout"): the library folders never reach up into the applications
    // built on them, so each can be read, tested and reused without the relay or the client.
    files: [`src/{${LIBRARY_FOLDERS.join(',')}}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: `^(\\.\\./)+(${APPLICATION_FOLDERS.join('|')})(/|$)`,
              message:
                'Library folders must not import from src/relay, src/client, src/cli or src/demo: ' +
                'move what both need into src/lib (or the lower folder).',
            },
          ],
        },
      ],
    },
  },
  {
    // src/lib is the bottom layer: packages and its own modules only.
    files: ['src/lib/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^\\.\\./',
              message: 'src/lib imports nothing from other src folders: it is the bottom layer.',
            },
          ],
        },
      ],
    },
  },
  prettier,
);
