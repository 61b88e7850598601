-- robustd in Neovim (0.7 or later): diagnostics and hover on utterance files.
--
--   -- init.lua
--   package.path = '/path/to/robustd/clients/nvim/?.lua;' .. package.path
--   require('robustd').setup({
--     cmd = { 'robustd', '--stdio', '--model', vim.fn.expand('~/.cache/robustd/models/all-MiniLM-L6-v2') },
--   })
--
-- Files ending in .utter or .utterances get the filetype "utterances" (robustd's language id);
-- one utterance a line, "# expect: intent" annotations allowed (docs/editors.md).
local M = {}

function M.setup(opts)
  opts = opts or {}
  local cmd = opts.cmd or { 'robustd', '--stdio', '--model', vim.fn.expand('~/.cache/robustd/models/all-MiniLM-L6-v2') }
  -- The filetype: an autocommand works on every version (0.7 only reads vim.filetype.add
  -- with g:do_filetype_lua set).
  if vim.filetype and vim.filetype.add then
    vim.filetype.add({ extension = { utter = 'utterances', utterances = 'utterances' } })
  end
  vim.api.nvim_create_autocmd({ 'BufRead', 'BufNewFile' }, {
    pattern = { '*.utter', '*.utterances' },
    command = 'set filetype=utterances',
  })
  local client_id = nil
  vim.api.nvim_create_autocmd('FileType', {
    pattern = 'utterances',
    callback = function(args)
      -- One robustd per editor session, shared by every utterance buffer.
      if client_id == nil or vim.lsp.get_client_by_id(client_id) == nil then
        client_id = vim.lsp.start_client({
          name = 'robustd',
          cmd = cmd,
          root_dir = vim.fn.getcwd(),
          on_attach = opts.on_attach,
        })
      end
      if client_id then vim.lsp.buf_attach_client(args.buf, client_id) end
    end,
  })
end

return M
